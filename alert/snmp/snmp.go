// Package snmp sends each alert as an SNMP notification defined by
// mibs/SELFPROTECT-MIB.txt: v2c traps, v2c informs (acknowledged by the
// manager and re-sent until they are — the reliable channel), and v3
// authPriv traps and informs.
//
// A trap is fire-and-forget: success means it left this host. An inform
// succeeds only when the manager acknowledged it; the retries here cover a
// lost datagram, the outbox's backoff covers a manager that is down.
package snmp

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gosnmp/gosnmp"

	"github.com/selfprotect/selfprotect/alert"
)

// Object sub-identifiers under root.1, as in the MIB.
const (
	objAlertID = iota + 1
	objCase
	objTransition
	objSeverity
	objResource
	objFRU
	objSummary
	objHost
	objEvidenceCount
	objUndo
)

// Notifications names the MIB's notification for each transition; its
// OID is root.0.N where N is the transition's place in alert.Transitions,
// counting from 1.
var Notifications = map[alert.Transition]string{
	alert.Diagnosed: "spCaseDiagnosed", alert.Isolated: "spCaseIsolated",
	alert.IsolationFailed: "spIsolationFailed", alert.Refused: "spIsolationRefused",
	alert.BudgetExhausted: "spBudgetExhausted", alert.StormStarted: "spStormStarted",
	alert.StormEnded: "spStormEnded", alert.SourceBlind: "spSourceBlind",
	alert.SourceDegraded: "spSourceDegraded", alert.Unarmed: "spDaemonUnarmed",
	alert.Repaired: "spCaseRepaired", alert.Acquitted: "spCaseAcquitted",
	alert.Replaced: "spCaseReplaced", alert.OutboxOverflow: "spOutboxOverflow", alert.Test: "spTest",
	alert.SourceBlindCleared: "spSourceBlindCleared", alert.SourceDegradedCleared: "spSourceDegradedCleared",
	alert.UnarmedCleared: "spDaemonUnarmedCleared", alert.WouldIsolate: "spCaseWouldIsolate",
}

// Objects names the MIB's objects by sub-identifier.
var Objects = map[int]string{
	objAlertID: "spAlertId", objCase: "spCaseUUID", objTransition: "spTransition", objSeverity: "spSeverity",
	objResource: "spResource", objFRU: "spFRU", objSummary: "spSummary", objHost: "spHost",
	objEvidenceCount: "spEvidenceCount", objUndo: "spUndo",
}

// severityValue is spSeverity's enumeration.
var severityValue = map[alert.Severity]int{alert.SeverityInfo: 1, alert.SeverityWarning: 2, alert.SeverityCritical: 3}

const (
	oidSysUpTime   = "1.3.6.1.2.1.1.3.0"
	oidSnmpTrapOID = "1.3.6.1.6.3.1.1.4.1.0"
	// maxText is the MIB's DisplayString size for the free-text objects.
	maxText = 255
	// perTry bounds one inform round trip; Retries more follow. minTry
	// keeps a nearly spent deadline from asking gosnmp for no wait at all.
	perTry = 2 * time.Second
	minTry = 50 * time.Millisecond
)

// Notifier sends to one manager.
type Notifier struct {
	cfg      alert.SNMPConfig
	host     string
	port     uint16
	engineID string
	started  time.Time
}

// New builds the notifier. host names this machine in a derived engine ID.
func New(cfg alert.SNMPConfig, host string) (*Notifier, error) {
	h, p, err := net.SplitHostPort(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("snmp target %q: %w", cfg.Target, err)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("snmp target %q: bad port: %w", cfg.Target, err)
	}
	n := &Notifier{cfg: cfg, host: h, port: uint16(port), started: time.Now()}
	if cfg.Version == alert.SNMPv3 {
		if cfg.EngineID != "" {
			b, err := hex.DecodeString(strings.TrimPrefix(cfg.EngineID, "0x"))
			if err != nil {
				return nil, fmt.Errorf("snmp engine_id: %w", err)
			}
			n.engineID = string(b)
		} else {
			n.engineID = string(EngineID(host))
		}
	}
	if cfg.RootOID == "" {
		n.cfg.RootOID = alert.DefaultRootOID
	}
	return n, nil
}

// EngineID derives a v3 engine ID from the host name (RFC 3411 text
// format under enterprise 32473), stable across restarts so the manager's
// createUser line keeps matching.
func EngineID(host string) []byte {
	id := []byte{0x80, 0x00, 0x7e, 0xd9, 0x04}
	if host == "" {
		host = "selfprotect"
	}
	return append(id, []byte(host)[:min(len(host), 27)]...)
}

// NotificationOID is the trap OID of a transition.
func NotificationOID(root string, t alert.Transition) (string, error) {
	i := slices.Index(alert.Transitions, t)
	if i < 0 {
		return "", fmt.Errorf("no notification for transition %q", t)
	}
	return fmt.Sprintf("%s.0.%d", root, i+1), nil
}

// Varbinds are the notification's variables after sysUpTime: the trap OID
// then every object.
func (n *Notifier) Varbinds(a alert.Alert) ([]gosnmp.SnmpPDU, error) {
	trapOID, err := NotificationOID(n.cfg.RootOID, a.Transition)
	if err != nil {
		return nil, err
	}
	obj := func(id int) string { return fmt.Sprintf("%s.1.%d.0", n.cfg.RootOID, id) }
	str := func(id int, s string) gosnmp.SnmpPDU {
		if len(s) > maxText {
			s = s[:maxText]
		}
		return gosnmp.SnmpPDU{Name: obj(id), Type: gosnmp.OctetString, Value: s}
	}
	ticks := uint32(time.Since(n.started) / (10 * time.Millisecond)) //nolint:gosec // wraps like sysUpTime does
	return []gosnmp.SnmpPDU{
		{Name: oidSysUpTime, Type: gosnmp.TimeTicks, Value: ticks},
		{Name: oidSnmpTrapOID, Type: gosnmp.ObjectIdentifier, Value: trapOID},
		str(objAlertID, a.ID),
		str(objCase, a.Case),
		str(objTransition, string(a.Transition)),
		{Name: obj(objSeverity), Type: gosnmp.Integer, Value: severityValue[a.Severity]},
		str(objResource, a.Suspect),
		str(objFRU, a.FRU),
		str(objSummary, a.Summary),
		str(objHost, a.Host),
		{Name: obj(objEvidenceCount), Type: gosnmp.Gauge32, Value: uint(max(a.EvidenceCount, 0))},
		str(objUndo, a.Undo),
	}, nil
}

func (n *Notifier) client(ctx context.Context) *gosnmp.GoSNMP {
	g := &gosnmp.GoSNMP{
		Target: n.host, Port: n.port, Transport: "udp", Context: ctx,
		Timeout: perTry, Retries: n.cfg.Retries, MaxOids: gosnmp.MaxOids,
	}
	if dl, ok := ctx.Deadline(); ok {
		// Leave the retries room within the dispatcher's timeout.
		g.Timeout = max(min(perTry, time.Until(dl)/time.Duration(n.cfg.Retries+1)), minTry)
	}
	switch n.cfg.Version {
	case alert.SNMPv3:
		g.Version = gosnmp.Version3
		g.SecurityModel = gosnmp.UserSecurityModel
		g.MsgFlags = gosnmp.AuthPriv
		usm := &gosnmp.UsmSecurityParameters{
			UserName:                 n.cfg.User,
			AuthenticationProtocol:   authProtocols[n.cfg.AuthProtocol],
			AuthenticationPassphrase: n.cfg.AuthKey.Reveal(),
			PrivacyProtocol:          privProtocols[n.cfg.PrivProtocol],
			PrivacyPassphrase:        n.cfg.PrivKey.Reveal(),
		}
		if n.cfg.Mode == alert.SNMPTrap {
			// A trap's sender is the authoritative engine; the manager
			// knows the user under our engine ID. An inform's receiver
			// is, and gosnmp discovers it when this is left empty.
			usm.AuthoritativeEngineID = n.engineID
			usm.AuthoritativeEngineBoots = 1
			usm.AuthoritativeEngineTime = uint32(time.Since(n.started) / time.Second) //nolint:gosec
		}
		g.SecurityParameters = usm
	default:
		g.Version = gosnmp.Version2c
		g.Community = n.cfg.Community.Reveal()
	}
	return g
}

var (
	authProtocols = map[string]gosnmp.SnmpV3AuthProtocol{"SHA": gosnmp.SHA, "SHA256": gosnmp.SHA256, "SHA512": gosnmp.SHA512}
	privProtocols = map[string]gosnmp.SnmpV3PrivProtocol{"AES": gosnmp.AES, "AES256": gosnmp.AES256}
)

// Notify sends a trap or an inform. Failures are retried by the outbox: a
// trap fails only when it cannot leave the host, an inform when no
// acknowledgement came.
func (n *Notifier) Notify(ctx context.Context, a alert.Alert) (bool, error) {
	vars, err := n.Varbinds(a)
	if err != nil {
		return false, err
	}
	g := n.client(ctx)
	if err := g.Connect(); err != nil {
		return true, fmt.Errorf("snmp %s to %s: %w", n.cfg.Mode, n.cfg.Target, err)
	}
	defer g.Conn.Close()
	if _, err := g.SendTrap(gosnmp.SnmpTrap{Variables: vars, IsInform: n.cfg.Mode == alert.SNMPInform}); err != nil {
		return true, fmt.Errorf("snmp %s %s to %s: %w", n.cfg.Version, n.cfg.Mode, n.cfg.Target, err)
	}
	return false, nil
}
