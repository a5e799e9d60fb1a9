package store

import (
	"context"
	"reflect"
	"testing"
)

func TestPortSettingsRoundTripAndCascade(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if err := db.CreateDistro(ctx, Distro{ID: "d1", Name: "one", Version: 1, State: "Stopped", Location: "/x"}); err != nil {
		t.Fatal(err)
	}
	want := PortSetting{DistroID: "d1", Proto: "tcp", Port: 8080, LAN: true, Allow: []string{"10.0.0.0/8", "fd00::/8"}, LANAddress: "192.0.2.1", Localhost: true}
	if err := db.PutPortSetting(ctx, want); err != nil {
		t.Fatal(err)
	}
	// Replace: same key, new values.
	want.LAN, want.Allow = false, nil
	if err := db.PutPortSetting(ctx, want); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPortSetting(ctx, PortSetting{DistroID: "d1", Proto: "udp", Port: 53}); err != nil {
		t.Fatal(err)
	}
	got, err := db.PortSettings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1].Proto != "udp" || got[1].Localhost {
		t.Fatalf("PortSettings() = %+v, want [%+v, udp/53]", got, want)
	}
	for _, bad := range []PortSetting{
		{DistroID: "nope", Proto: "tcp", Port: 1},
		{DistroID: "d1", Proto: "sctp", Port: 1},
		{DistroID: "d1", Proto: "tcp", Port: 70000},
	} {
		if err := db.PutPortSetting(ctx, bad); err == nil {
			t.Errorf("PutPortSetting(%+v) succeeded, want a constraint error", bad)
		}
	}
	if _, err := db.sql.ExecContext(ctx, "DELETE FROM distros WHERE id = 'd1'"); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.PortSettings(ctx); len(got) != 0 {
		t.Errorf("settings outlived their distro: %+v", got)
	}
}

func TestPortProxyRules(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	r := PortProxyRule{ID: "r1", Proto: "tcp", ListenAddress: "0.0.0.0", ListenPort: 8081, ConnectAddress: "127.0.0.1", ConnectPort: 8080, Allow: []string{"192.168.0.0/16"}}
	if err := db.PutPortProxyRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPortProxyRule(ctx, PortProxyRule{ID: "r2", Proto: "udp", ListenAddress: "::", ListenPort: 53, ConnectAddress: "dns.example", ConnectPort: 53}); err != nil {
		t.Fatal(err)
	}
	got, err := db.PortProxyRules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !reflect.DeepEqual(got[0], r) || got[1].Allow != nil {
		t.Fatalf("PortProxyRules() = %+v", got)
	}
	if err := db.DeletePortProxyRule(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeletePortProxyRule(ctx, "r1"); err != nil {
		t.Errorf("deleting a missing rule: %v", err)
	}
	if got, _ := db.PortProxyRules(ctx); len(got) != 1 || got[0].ID != "r2" {
		t.Errorf("after delete: %+v", got)
	}
}
