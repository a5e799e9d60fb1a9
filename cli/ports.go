package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/subsys-dev/subsys/api"
	"github.com/subsys-dev/subsys/client"
)

// stateText says a port state in words.
func stateText(state, errText string) string {
	switch state {
	case api.PortLocal:
		return "this host only"
	case api.PortLAN:
		return "LAN"
	case api.PortClosed:
		return "not listening (setting kept)"
	}
	if errText != "" {
		return state + ": " + errText
	}
	return state
}

func allowText(a []string) string {
	if len(a) == 0 {
		return "any"
	}
	return strings.Join(a, ",")
}

func newPortsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ports NAME",
		Short: "List the ports a distro listens on and who can reach them",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			ps, err := c.Ports(ctx, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(ps)
			}
			if len(ps) == 0 {
				fmt.Fprintf(stdout, "No program in %s is listening on a port.\n", sanitize(args[0]))
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "PROTO\tADDRESS\tPORT\tPROCESS\tREACH\tALLOW\tCONNS\tIN\tOUT")
			for _, p := range ps {
				// The process name is whatever a program in the distro called
				// itself: row sanitizes every cell.
				proc := p.Process
				if p.PID != 0 {
					proc = fmt.Sprintf("%s (%d)", p.Process, p.PID)
				}
				row(tw, p.Proto, p.Address, p.Port, proc, stateText(p.State, p.Error), allowText(p.Allow),
					p.Connections, bytesText(p.BytesIn), bytesText(p.BytesOut))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	return cmd
}

func newExposeCmd(g *globals) *cobra.Command {
	var udp, lan, noLAN, localhost, noLocalhost bool
	var allow []string
	var lanAddress string
	var cmd *cobra.Command
	cmd = &cobra.Command{
		Use:   "expose NAME PORT",
		Short: "Choose who can reach a port of a distro: this host only, or the LAN too",
		Long: `Choose who can reach a port of a distro. Ports reach this host only until
--lan turns LAN access on; --no-lan turns it off again and cuts live LAN
connections. --allow limits LAN clients to source prefixes (CIDR, comma-separated;
--allow "" allows any). The setting is kept and applied whenever the port listens.`,
		Example: "  subsys expose web 8080 --lan --allow 192.168.1.0/24\n  subsys expose dns 53 --udp --no-lan",
		Args:    cobra.ExactArgs(2),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			n, err := strconv.ParseUint(args[1], 10, 16)
			if err != nil || n == 0 {
				return fmt.Errorf("port %q: want a number from 1 to 65535", args[1])
			}
			if lan && noLAN {
				return errors.New("--lan and --no-lan contradict each other")
			}
			if localhost && noLocalhost {
				return errors.New("--localhost and --no-localhost contradict each other")
			}
			var u api.PortUpdate
			if lan || noLAN {
				u.LAN = &lan
			}
			if localhost || noLocalhost {
				u.Localhost = &localhost
			}
			if cmd.Flags().Changed("allow") {
				list := []string{}
				for _, a := range allow {
					if a = strings.TrimSpace(a); a != "" {
						list = append(list, a)
					}
				}
				u.Allow = &list
			}
			if cmd.Flags().Changed("lan-address") {
				u.LANAddress = &lanAddress
			}
			proto := api.TCP
			if udp {
				proto = api.UDP
			}
			p, err := c.SetPort(ctx, args[0], proto, uint16(n), u)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s port %d of %s: %s (allow %s)\n", sanitize(p.Proto), p.Port, sanitize(args[0]),
				sanitize(stateText(p.State, p.Error)), sanitize(allowText(p.Allow)))
			if p.State == api.PortConflict || p.State == api.PortError {
				return exitError{code: 1}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&udp, "udp", false, "the port is a UDP port (default TCP)")
	f.BoolVar(&lan, "lan", false, "let other hosts on the network connect")
	f.BoolVar(&noLAN, "no-lan", false, "this host only; cuts live LAN connections")
	f.StringSliceVar(&allow, "allow", nil, "source prefixes allowed from the LAN, comma-separated (\"\" for any)")
	f.StringVar(&lanAddress, "lan-address", "", "expose on this host address only (\"\" for every address)")
	f.BoolVar(&localhost, "localhost", false, "reachable on host loopback (version 2)")
	f.BoolVar(&noLocalhost, "no-localhost", false, "not reachable on host loopback (version 2)")
	return cmd
}

func newPortProxyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "portproxy",
		Short: "Forward a host port to any address, like netsh interface portproxy",
	}
	var (
		udp                         bool
		listenAddr, connectAddr, id string
		listenPort, connectPort     int
		allow                       []string
		asJSON                      bool
	)
	add := &cobra.Command{
		Use:     "add",
		Short:   "Add a rule: connections to --listen-address:--listen-port go to --connect-address:--connect-port",
		Example: "  subsys portproxy add --listen-port 8081 --connect-address 127.0.0.1 --connect-port 8080\n  subsys portproxy add --udp --listen-port 5353 --connect-port 53 --allow 10.0.0.0/8",
		Args:    cobra.NoArgs,
		RunE: withClient(g, func(ctx context.Context, c *client.Client, _ []string) error {
			if listenPort == 0 || connectPort == 0 {
				return errors.New("--listen-port and --connect-port are required")
			}
			proto := api.TCP
			if udp {
				proto = api.UDP
			}
			r, err := c.AddPortProxyRule(ctx, api.RuleRequest{ID: id, Proto: proto, ListenAddress: listenAddr, ListenPort: listenPort,
				ConnectAddress: connectAddr, ConnectPort: connectPort, Allow: allow})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "rule %s: %s %s -> %s (%s)\n", sanitize(r.ID), sanitize(r.Proto),
				sanitize(hostPort(r.ListenAddress, int(r.ListenPort))), sanitize(hostPort(r.ConnectAddress, int(r.ConnectPort))), sanitize(stateText(r.State, r.Error)))
			return nil
		}),
	}
	af := add.Flags()
	af.BoolVar(&udp, "udp", false, "forward UDP (default TCP)")
	af.StringVar(&id, "id", "", "name the rule (default: a random id)")
	af.StringVar(&listenAddr, "listen-address", "0.0.0.0", "host address to listen on (:: for IPv6)")
	af.IntVar(&listenPort, "listen-port", 0, "port to listen on")
	af.StringVar(&connectAddr, "connect-address", "127.0.0.1", "address or host name to forward to")
	af.IntVar(&connectPort, "connect-port", 0, "port to forward to")
	af.StringSliceVar(&allow, "allow", nil, "source prefixes allowed, comma-separated (default any)")
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls", "show"},
		Short:   "List the rules with their state and counters",
		Args:    cobra.NoArgs,
		RunE: withClient(g, func(ctx context.Context, c *client.Client, _ []string) error {
			rs, err := c.PortProxyRules(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(rs)
			}
			if len(rs) == 0 {
				fmt.Fprintln(stdout, "There are no portproxy rules. Add one with: subsys portproxy add --listen-port P --connect-port Q")
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tPROTO\tLISTEN\tCONNECT\tALLOW\tSTATE\tCONNS\tIN\tOUT")
			for _, r := range rs {
				row(tw, r.ID, r.Proto, hostPort(r.ListenAddress, int(r.ListenPort)), hostPort(r.ConnectAddress, int(r.ConnectPort)),
					allowText(r.Allow), stateText(r.State, r.Error), r.Connections, bytesText(uint64(r.BytesIn)), bytesText(uint64(r.BytesOut)))
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print the API's JSON")
	del := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a rule; its listener closes and its connections are cut",
		Args:    cobra.ExactArgs(1),
		RunE: withClient(g, func(ctx context.Context, c *client.Client, args []string) error {
			return c.DeletePortProxyRule(ctx, args[0])
		}),
	}
	cmd.AddCommand(add, list, del)
	return cmd
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// bytesText formats a byte count with a binary unit.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// printJSON prints v as indented JSON, escaped for a terminal (see escapeJSON).
func printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	if _, err := stdout.Write(append(escapeJSON(b), '\n')); err != nil {
		return fmt.Errorf("print JSON: %w", err)
	}
	return nil
}
