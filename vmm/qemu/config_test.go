package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestConfigArgs(t *testing.T) {
	tail := func(run string) []string {
		return []string{
			"-chardev", "socket,id=qmp,path=" + run + "/qmp.sock,server=on,wait=off",
			"-mon", "chardev=qmp,mode=control",
			"-chardev", "socket,id=console,path=" + run + "/console.sock,server=on,wait=on",
			"-serial", "chardev:console",
			"-device", "virtio-serial-pci,id=vser0",
			"-chardev", "socket,id=agent,path=" + run + "/agent.sock,server=on,wait=off",
			"-device", "virtserialport,bus=vser0.0,chardev=agent,name=subsys.agent",
			"-device", "virtio-scsi-pci,id=scsi0",
			"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on",
			"-device", "virtio-rng-pci",
		}
	}
	head := func(mem string) []string {
		return []string{"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
			"-object", "memory-backend-memfd,id=mem,share=on,size=" + mem + "M", "-machine", "q35,memory-backend=mem"}
	}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name    string
		cfg     Config
		want    []string
		wantErr string // a part of the error; "" for none
	}{{
		name: "defaults",
		cfg:  Config{Kernel: "/k/vmlinuz", RunDir: "/run/vm"},
		want: cat(head("512"), []string{"-accel", "tcg", "-m", "512", "-smp", "1", "-kernel", "/k/vmlinuz", "-pidfile", "/run/vm/qemu.pid"}, tail("/run/vm")),
	}, {
		name: "everything",
		cfg: Config{Kernel: "/k/vmlinuz", Initrd: "/k/initrd.gz", Append: "console=ttyS0 quiet panic=-1",
			MemoryMiB: 2048, CPUs: 2, Accel: "kvm", RunDir: "/run/vm"},
		want: cat(head("2048"), []string{"-accel", "kvm", "-m", "2048", "-smp", "2", "-kernel", "/k/vmlinuz", "-pidfile", "/run/vm/qemu.pid",
			"-initrd", "/k/initrd.gz", "-append", "console=ttyS0 quiet panic=-1"}, tail("/run/vm")),
	}, {
		// A comma in a chardev path would start a new option; QEMU reads ",,".
		name: "comma in the run directory",
		cfg:  Config{Kernel: "/k,1/vmlinuz", RunDir: "/run/a,b"},
		want: cat(head("512"), []string{"-accel", "tcg", "-m", "512", "-smp", "1", "-kernel", "/k,1/vmlinuz", "-pidfile", "/run/a,b/qemu.pid"}, tail("/run/a,,b")),
	}, {
		name:    "no kernel",
		cfg:     Config{RunDir: "/run/vm"},
		wantErr: "no kernel",
	}, {
		name:    "no run directory",
		cfg:     Config{Kernel: "/k"},
		wantErr: "no run directory",
	}, {
		name:    "relative run directory",
		cfg:     Config{Kernel: "/k", RunDir: "run"},
		wantErr: "not absolute",
	}, {
		name:    "run directory too long for a socket",
		cfg:     Config{Kernel: "/k", RunDir: "/" + strings.Repeat("d", 100)},
		wantErr: "too long",
	}, {
		name:    "negative sizes",
		cfg:     Config{Kernel: "/k", RunDir: "/r", MemoryMiB: -1, CPUs: -2},
		wantErr: "negative",
	}, {
		name:    "accelerator with options",
		cfg:     Config{Kernel: "/k", RunDir: "/r", Accel: "kvm,foo=bar"},
		wantErr: "not a name",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.Args()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Args() error = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Args(): %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Args() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
