# subsys in a container. Build: docker build -t subsys .
# Run:  docker run --privileged --pid=host -p 127.0.0.1:7070:7070 -v subsys-data:/var/lib/subsys subsys
# Login: docker exec <container> subsys dashboard   (prints the browser login URL; the CLI
#        in the container reaches the server over /var/lib/subsys/subsys.sock)
#
# Version 1 distros are namespaces on the host kernel: the server must be able to
# create mount, PID, UTS and IPC namespaces, mount proc/sysfs/devpts/tmpfs, bind-mount
# and pivot_root — that is CAP_SYS_ADMIN plus CAP_MKNOD, CAP_SYS_CHROOT, CAP_SETUID/
# CAP_SETGID, CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER and CAP_KILL, with the default
# seccomp and AppArmor profiles relaxed (they refuse mount and pivot_root). --privileged
# is the simple way to get all of it. /mnt/host in a distro is then the container's
# root (bind-mounting the real host's root there is not supported yet).
#
# Ports: a distro's ports are the container's. For them to be the host's (and for
# the network manager's LAN toggles, firewall table and portproxy rules to act on the
# host's network), run with --network=host; --privileged already grants the
# CAP_NET_ADMIN that the nftables table and SOCK_DESTROY need.
#
# Version 2 distros run in a QEMU utility VM: the image carries qemu-system-x86 (with
# virtiofsd, for /mnt/host), passt (the VM's network) and
# Debian's kernel (unpacked, with depmod run, in /usr/lib/subsys/kernel, linked as the
# data directory's vm/kernel; a volume mounted on /var/lib/subsys hides that link, so
# there set the kernel setting to /usr/lib/subsys/kernel). Pass --device /dev/kvm for KVM;
# without it QEMU emulates (TCG), slower but the same.

FROM node:20-bookworm AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
COPY --from=web /src/web/dist/ web/dist/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o embedded/subsys-agent ./vmm/agent/cmd/subsys-agent \
 && go build -trimpath -o /out/subsys .

FROM debian:bookworm-slim
# mmdebstrap (with Debian's keyring) builds the catalog's releases for `subsys install`.
RUN apt-get update && apt-get install -y --no-install-recommends e2fsprogs ca-certificates qemu-system-x86 kmod passt mmdebstrap debian-archive-keyring \
 && cd /tmp && pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}') \
 && apt-get download "$pkg" && mkdir -p /usr/lib/subsys/kernel && dpkg-deb -x /tmp/linux-image-*.deb /usr/lib/subsys/kernel \
 && depmod -b /usr/lib/subsys/kernel "$(ls /usr/lib/subsys/kernel/lib/modules)" \
 && rm -rf /tmp/*.deb /usr/lib/subsys/kernel/usr /var/lib/apt/lists/* \
 && mkdir -p /var/lib/subsys/vm && ln -s /usr/lib/subsys/kernel /var/lib/subsys/vm/kernel
COPY --from=build /out/subsys /usr/local/bin/subsys
VOLUME /var/lib/subsys
EXPOSE 7070
# Inside the container the published port arrives on eth0, so listen on all
# addresses; TLS is required off loopback, so mount a key pair, or keep the
# default loopback listen and use --network=host instead.
ENTRYPOINT ["/usr/local/bin/subsys", "serve", "--data", "/var/lib/subsys"]
CMD ["--listen", "127.0.0.1:7070"]
