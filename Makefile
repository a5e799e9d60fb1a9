# subsys — `make` lists the targets. The two that matter most:
#   make run    install what is missing, build, and start `subsys serve`
#   make test   install what is missing, then everything CI runs (vet, unit tests with
#               -race, integration, LAN and browser tests, as root)

SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DATA ?=
LISTEN ?= 127.0.0.1:7070
# Debian packages the build, the tests and the benchmarks use.
# gcc-mingw-w64-x86-64 is the C compiler of the Windows cross-build (go-sqlite3 needs cgo).
APT_PACKAGES := e2fsprogs busybox-static mmdebstrap runc iproute2 socat iperf3 ca-certificates chromium bsdutils curl xz-utils bzip2 qemu-system-x86 cpio kmod passt gcc-mingw-w64-x86-64
# Where the Debian test root file system is cached between runs.
ROOTFS_CACHE ?= /var/cache/subsys-test
ROOTFS_TAR := $(ROOTFS_CACHE)/debian-bookworm-minbase.tar
# The same with systemd, for the tests of systemd as a distro's PID 1.
ROOTFS_SYSTEMD_TAR := $(ROOTFS_CACHE)/debian-bookworm-systemd.tar
# Where Debian's kernel package is unpacked (boot/vmlinuz-*, lib/modules/) for the tests
# of vmm/qemu, which boot it under QEMU.
KERNEL_CACHE ?= $(ROOTFS_CACHE)/kernel

.DEFAULT_GOAL := help
.PHONY: help deps apt-packages web agent build run test test-unit test-integration test-browser bench check check-windows cross-windows rootfs kernel clean fuzz

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

deps: ## install missing Debian packages and the utility VM's kernel (idempotent; needs root or sudo)
	@$(MAKE) --no-print-directory apt-packages kernel
	@# The server boots version 2's VM with the kernel in its data directory's vm/kernel.
	@dest=$(if $(DATA),$(DATA),/var/lib/subsys)/vm/kernel; \
	if [ "$$(id -u)" = 0 ] && ! ls $$dest/boot/vmlinuz-* >/dev/null 2>&1; then \
		mkdir -p $$(dirname $$dest) && chmod 700 $$(dirname $$dest) && rm -rf $$dest.tmp && cp -a $(KERNEL_CACHE) $$dest.tmp && mv $$dest.tmp $$dest && echo "kernel: installed in $$dest"; \
	fi

apt-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

web: ## build the dashboard (npm ci + vite) into web/dist, embedded by build
	cd web && { [ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund; } && npm run build

agent: ## build the static agent into embedded/ (embedded into subsys)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o embedded/subsys-agent ./vmm/agent/cmd/subsys-agent

build: web agent ## build bin/subsys with the agent and the dashboard embedded
	$(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o bin/subsys .

run: deps build ## install, build and start the server (DATA=dir LISTEN=addr to override)
	./bin/subsys serve $(if $(DATA),--data $(DATA)) --listen $(LISTEN)

rootfs: ## build (once) the cached Debian minbase tarballs (plain, and with systemd) the integration tests and benchmarks use
	@if [ ! -s $(ROOTFS_TAR) ]; then \
		mkdir -p $(ROOTFS_CACHE) && \
		rm -rf $(ROOTFS_TAR).tmp && mmdebstrap --quiet --format=tar --variant=minbase --include=procps,iproute2,passwd,login,less,vim-tiny bookworm $(ROOTFS_TAR).tmp && \
		mv $(ROOTFS_TAR).tmp $(ROOTFS_TAR); \
	fi
	@if [ ! -s $(ROOTFS_SYSTEMD_TAR) ]; then \
		mkdir -p $(ROOTFS_CACHE) && \
		rm -rf $(ROOTFS_SYSTEMD_TAR).tmp && mmdebstrap --quiet --format=tar --variant=minbase --include=systemd,systemd-sysv,dbus,procps,iproute2 bookworm $(ROOTFS_SYSTEMD_TAR).tmp && \
		mv $(ROOTFS_SYSTEMD_TAR).tmp $(ROOTFS_SYSTEMD_TAR); \
	fi
	@ls -l $(ROOTFS_TAR) $(ROOTFS_SYSTEMD_TAR)

kernel: ## download (once) Debian's current kernel package and unpack it into KERNEL_CACHE for the QEMU tests
	@if ! ls $(KERNEL_CACHE)/boot/vmlinuz-* >/dev/null 2>&1; then \
		pkg=$$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $$2; exit}'); \
		if [ -z "$$pkg" ]; then \
			SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -q >/dev/null && \
			pkg=$$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $$2; exit}'); \
		fi; \
		[ -n "$$pkg" ] || { echo "kernel: apt-cache names no versioned package behind linux-image-amd64"; exit 1; }; \
		tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && chmod 755 "$$tmp" && { chown _apt "$$tmp" 2>/dev/null || true; } && \
		echo "kernel: downloading $$pkg" && (cd "$$tmp" && apt-get download -q "$$pkg") && \
		rm -rf $(KERNEL_CACHE).tmp && mkdir -p $(KERNEL_CACHE).tmp && \
		dpkg-deb -x "$$tmp"/*.deb $(KERNEL_CACHE).tmp && \
		rm -rf $(KERNEL_CACHE) && mv $(KERNEL_CACHE).tmp $(KERNEL_CACHE); \
	fi
	@# The package ships no modules.dep (its postinst runs depmod): the initramfs needs it.
	@for m in $(KERNEL_CACHE)/lib/modules/*; do \
		[ -s $$m/modules.dep ] || PATH=$$PATH:/usr/sbin:/sbin depmod -b $(KERNEL_CACHE) $$(basename $$m) || exit 1; \
	done
	@ls $(KERNEL_CACHE)/boot/vmlinuz-*

test: deps build test-unit check-windows cross-windows test-integration test-browser ## install what is missing, then vet, unit tests (-race), the Windows checks and cross-build, integration and browser tests (root)

test-unit: kernel ## go vet and the unit tests with the race detector (vmm/qemu boots the cached kernel)
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	SUBSYS_KERNEL_DIR=$(KERNEL_CACHE) $(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v /e2e)

check-windows: ## compile checks for Windows: go vet, and every package's tests built (no cgo; nothing runs)
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) vet ./...
	@for p in $$($(GO) list ./...); do \
		GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) test -c -o /dev/null $$p >/dev/null || { echo "check-windows: $$p does not build for Windows"; exit 1; }; \
	done

cross-windows: build ## cross-build dist/subsys.exe for windows/amd64 with cgo (mingw-w64), the Linux agent, the VM's initrd (with this host's e2fsprogs) and web/dist embedded
	./bin/subsys vm-initrd embedded/windows-initrd.img
	CGO_ENABLED=1 CC=x86_64-w64-mingw32-gcc GOOS=windows GOARCH=amd64 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION)" -o dist/subsys.exe .; \
		st=$$?; rm -f embedded/windows-initrd.img; exit $$st
	@ls -l dist/subsys.exe

test-integration: build rootfs kernel ## end-to-end tests of bin/subsys as root: real namespaces, SQLite, HTTP, QEMU under TCG
	SUBSYS_BIN=$(CURDIR)/bin/subsys SUBSYS_ROOTFS_TAR=$(ROOTFS_TAR) SUBSYS_KERNEL_DIR=$(KERNEL_CACHE) $(GO) test -count=1 -timeout 30m -v ./e2e/ 2>&1 | tee test-output.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)' ; test $${PIPESTATUS[0]} -eq 0

test-browser: build ## the dashboard in headless Chromium (playwright-core) against a real server
	cd web && SUBSYS_BIN=$(CURDIR)/bin/subsys npm test

bench: build rootfs kernel ## benchmarks: import vs tar -xf, exec vs runc, terminals, ports, version 2 (prints ratios)
	SUBSYS_BIN=$(CURDIR)/bin/subsys SUBSYS_ROOTFS_TAR=$(ROOTFS_TAR) SUBSYS_KERNEL_DIR=$(KERNEL_CACHE) $(GO) test -count=1 -timeout 30m -run '^$$' -bench . -benchtime 1x ./e2e/

fuzz: ## run every fuzz target for 30 s each
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 30s $$pkg || exit 1; \
		done; done

check: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean: ## remove build output
	rm -rf bin dist embedded/subsys-agent web/node_modules
	find web/dist -mindepth 1 ! -name .gitkeep -delete
