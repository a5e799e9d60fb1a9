package server

import (
	"net/netip"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/netmgr"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// What the server sends is package api's vocabulary, which every client
// shares; vmm, netmgr and the agent keep types of their own, shaped for their
// work. These functions are the one place the two meet. Each keeps nil slices
// nil (null) and empty ones empty, so the JSON is what the internal types
// gave; wire_test.go checks that field by field.

func apiDistro(d vmm.Distro) api.Distro {
	return api.Distro{Name: d.Name, ID: d.ID, Version: d.Version, State: api.DistroState(d.State), Default: d.Default,
		Location: d.Location, DefaultUser: d.DefaultUser, Systemd: d.Systemd, CreatedAt: d.CreatedAt, DiskBytes: d.DiskBytes, DiskMaxBytes: d.DiskMaxBytes, DiskFreeBytes: d.DiskFreeBytes,
		MemoryBytes: d.MemoryBytes, CPUPercent: d.CPUPercent, MemoryMax: d.MemoryMax, CPUMax: d.CPUMax, PidsMax: d.PidsMax, Pids: d.Pids,
		OOMKills: d.OOMKills, LastOOMAt: d.LastOOMAt, AgentOutdated: d.AgentOutdated, Message: d.Message}
}

func apiDistros(ds []vmm.Distro) []api.Distro {
	return convertAll(ds, apiDistro)
}

func apiOperation(o vmm.OperationInfo) api.Operation {
	out := api.Operation{ID: o.ID, Kind: o.Kind, Distro: o.Distro, Status: o.Status,
		Progress: api.Progress(o.Progress), Error: o.Error, CreatedAt: o.CreatedAt, Message: o.Message}
	if o.Result != nil {
		r := api.OperationResult(*o.Result)
		out.Result = &r
	}
	return out
}

func apiSnapshot(s vmm.Snapshot) api.Snapshot {
	return api.Snapshot{Distros: apiDistros(s.Distros), Operations: convertAll(s.Operations, apiOperation)}
}

// apiVMStatus is a field-by-field copy: the guest's words (Error,
// KernelRelease) pass as they are and are escaped where they are shown.
func apiVMStatus(v vmm.VMStatus) api.VMStatus {
	st := api.VMStatus{Available: v.Available, State: api.VMState(v.State), Accel: v.Accel, AccelNote: v.AccelNote,
		PID: v.PID, StartedAt: v.StartedAt, MemoryMiB: v.MemoryMiB, CPUs: v.CPUs, RSSBytes: v.RSSBytes, Kernel: v.Kernel,
		KernelRelease: v.KernelRelease, Addresses: v.Addresses, Network: v.Network, HostFiles: v.HostFiles, HostFilesNote: v.HostFilesNote, Distros: v.Distros,
		MemoryReclaim: v.MemoryReclaim, MemoryHistory: convertAll(v.MemoryHistory, func(m vmm.MemorySample) api.MemorySample { return api.MemorySample(m) }), IdleTimeoutS: v.IdleTimeoutS, Error: v.Error}
	if v.Memory != nil {
		m := apiVMMemory(*v.Memory)
		st.Memory = &m
	}
	return st
}

func apiVMMemory(m vmm.VMMemory) api.VMMemory { return api.VMMemory(m) }

func apiOOM(e vmm.OOMEvent) api.OOMEvent { return api.OOMEvent(e) }

func apiRemoved(r vmm.RemovedDistro) api.RemovedDistro { return api.RemovedDistro(r) }

// apiSettings and the update below are conversions, not copies: a field added
// to vmm's settings and not to api's fails the build.
func apiSettings(s vmm.Settings) api.Settings { return api.Settings(s) }

func vmmSettingsUpdate(u api.SettingsUpdate) vmm.SettingsUpdate { return vmm.SettingsUpdate(u) }

func vmmUpdate(u api.DistroUpdate) vmm.Update { return vmm.Update(u) }

func apiMetrics(m vmm.Metrics) api.Metrics {
	return api.Metrics{IntervalS: m.IntervalS, Samples: convertAll(m.Samples, func(s vmm.Sample) api.Sample { return api.Sample(s) })}
}

func apiSession(si agent.SessionInfo) api.TerminalSession {
	return api.TerminalSession{ID: si.ID, Argv: si.Argv, User: si.User, PID: si.PID, Cols: si.Cols, Rows: si.Rows,
		Attached: si.Attached, CreatedAt: si.CreatedAt, Exited: si.Exited, ExitCode: si.ExitCode}
}

func apiPort(p netmgr.Port) api.Port {
	return api.Port{Proto: p.Proto, Port: p.Port, Address: addrText(p.Address), Process: p.Process, PID: p.PID,
		LAN: p.LAN, Allow: convertAll(p.Allow, prefixText), LANAddress: addrText(p.LANAddress), Localhost: p.Localhost,
		State: p.State, Error: p.Error, Connections: p.Connections, BytesIn: p.BytesIn, BytesOut: p.BytesOut}
}

func apiPorts(ps []netmgr.Port) []api.Port { return convertAll(ps, apiPort) }

func apiPortsEvent(e netmgr.PortsEvent) api.PortsEvent {
	return api.PortsEvent{Distro: e.Distro, ID: e.ID, Ports: apiPorts(e.Ports)}
}

// apiRule gives a rule an empty allow list instead of none, as the API
// promises arrays.
func apiRule(st netmgr.RuleStatus) api.Rule {
	allow := convertAll(st.Allow, prefixText)
	if allow == nil {
		allow = []string{}
	}
	return api.Rule{ID: st.ID, Proto: st.Proto, ListenAddress: addrText(st.ListenAddress), ListenPort: st.ListenPort,
		ConnectAddress: st.ConnectAddress, ConnectPort: st.ConnectPort, Allow: allow, State: st.State, Error: st.Error,
		Connections: st.Connections, Total: st.Total, Refused: st.Refused, Failed: st.Failed, BytesIn: st.BytesIn, BytesOut: st.BytesOut}
}

func apiRules(rs []netmgr.RuleStatus) []api.Rule { return convertAll(rs, apiRule) }

// addrText is an address as encoding/json writes a netip.Addr: "" for the
// zero Addr (every address, or none).
func addrText(a netip.Addr) string {
	b, _ := a.MarshalText() // never fails
	return string(b)
}

// prefixText is a prefix as encoding/json writes a netip.Prefix.
func prefixText(p netip.Prefix) string {
	b, _ := p.MarshalText() // never fails
	return string(b)
}

// convertAll converts every element of in; nil stays nil.
func convertAll[T, U any](in []T, f func(T) U) []U {
	if in == nil {
		return nil
	}
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}
