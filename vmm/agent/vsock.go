package agent

// VsockPort is the AF_VSOCK port the utility VM's agent serves on, beside
// its virtio-serial port, when the VM has a vsock device (virtio-vsock
// under QEMU, hvsocket under Hyper-V, whose service id for this port is
// what the host's HCS document lists). The protocol is the same.
const VsockPort = 5005
