package server

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/netmgr"
	"github.com/subsys-dev/subsys/vmm"
	"github.com/subsys-dev/subsys/vmm/agent"
)

// fill sets every field of v, recursively, to a value that is not zero, so
// that a field a conversion forgets shows in the JSON.
func fill(v reflect.Value) {
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)))
		return
	case reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("::ffff:192.0.2.1")))
		return
	case reflect.TypeFor[netip.Prefix]():
		v.Set(reflect.ValueOf(netip.MustParsePrefix("192.0.2.0/24")))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("text " + v.Type().Name())
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(9)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i))
			}
		}
	}
}

func filled[T any]() T {
	var v T
	fill(reflect.ValueOf(&v).Elem())
	return v
}

// sameJSON fails unless a and b encode to the same JSON object (key order aside).
func sameJSON(t *testing.T, what string, a, b any) {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var va, vb any
	json.Unmarshal(ja, &va)
	json.Unmarshal(jb, &vb)
	if !reflect.DeepEqual(va, vb) {
		t.Errorf("%s:\n internal %s\n      api %s", what, ja, jb)
	}
}

// TestWireConversions: what the server sends as api types is, byte for byte
// in meaning, what it sent when it encoded its internal types — every field,
// filled or zero (nil slices stay null).
func TestWireConversions(t *testing.T) {
	for _, fillIt := range []bool{true, false} {
		name := map[bool]string{true: "filled", false: "zero"}[fillIt]
		t.Run(name, func(t *testing.T) {
			pick := func(v any) any {
				if fillIt {
					fill(reflect.ValueOf(v).Elem())
				}
				return reflect.ValueOf(v).Elem().Interface()
			}
			d := pick(&vmm.Distro{}).(vmm.Distro)
			sameJSON(t, "distro", d, apiDistro(d))
			op := pick(&vmm.OperationInfo{}).(vmm.OperationInfo)
			sameJSON(t, "operation", op, apiOperation(op))
			snap := pick(&vmm.Snapshot{}).(vmm.Snapshot)
			sameJSON(t, "snapshot", snap, apiSnapshot(snap))
			rm := pick(&vmm.RemovedDistro{}).(vmm.RemovedDistro)
			sameJSON(t, "removed", rm, apiRemoved(rm))
			oom := pick(&vmm.OOMEvent{}).(vmm.OOMEvent)
			sameJSON(t, "oom", oom, apiOOM(oom))
			st := pick(&vmm.Settings{}).(vmm.Settings)
			sameJSON(t, "settings", st, apiSettings(st))
			vm := pick(&vmm.VMStatus{}).(vmm.VMStatus)
			sameJSON(t, "vm status", vm, apiVMStatus(vm))
			m := pick(&vmm.Metrics{}).(vmm.Metrics)
			sameJSON(t, "metrics", m, apiMetrics(m))
			p := pick(&netmgr.Port{}).(netmgr.Port)
			sameJSON(t, "port", p, apiPort(p))
			pe := pick(&netmgr.PortsEvent{}).(netmgr.PortsEvent)
			sameJSON(t, "ports event", pe, apiPortsEvent(pe))
			si := pick(&agent.SessionInfo{}).(agent.SessionInfo)
			want := map[string]any{"id": si.ID, "argv": si.Argv, "user": si.User, "pid": si.PID, "cols": si.Cols, "rows": si.Rows,
				"attached": si.Attached, "created_at": si.CreatedAt, "exited": si.Exited, "exit_code": si.ExitCode}
			sameJSON(t, "terminal session", want, apiSession(si))
			rs := pick(&netmgr.RuleStatus{}).(netmgr.RuleStatus)
			got := apiRule(rs)
			if rs.Allow == nil {
				rs.Allow = []netip.Prefix{} // the API promises an array
			}
			sameJSON(t, "rule", rs, got)
		})
	}
}

// TestWireRequests: request bodies decode into api's types as into the
// internal ones they replaced.
func TestWireRequests(t *testing.T) {
	u := filled[api.DistroUpdate]()
	sameJSON(t, "distro update", u, vmmUpdate(u))
	su := filled[api.SettingsUpdate]()
	sameJSON(t, "settings update", su, vmmSettingsUpdate(su))
}
