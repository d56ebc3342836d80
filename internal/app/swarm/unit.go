package swarm

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tlsrelay/tlsrelay/core/config"
	"github.com/tlsrelay/tlsrelay/core/protocol"
	"github.com/tlsrelay/tlsrelay/core/relation/etcd"
	"github.com/tlsrelay/tlsrelay/sdk/certutil"
)

// Unit is one simulated unit: its key material in memory and its bag as it wrote it.
type Unit struct {
	s       *Swarm
	name    string
	want    protocol.Want
	ownKeys []string
	queued  atomic.Bool
	client  *clientv3.Client
	cancel  context.CancelFunc // its keepalives

	mu         sync.Mutex
	lease      clientv3.LeaseID
	bag        map[string]string
	pendingKey crypto.Signer
	pending    *protocol.Pending
	key        crypto.Signer
	installed  *protocol.Installed
	chainPEM   string
	crl        string
	err        string
	wake       *time.Timer
	left       bool
	certified  time.Time // when it installed its latest certificate
}

func (s *Swarm) newUnit(name string) (*Unit, error) {
	c := s.opts.Config.ForUnit(name).Certificate
	cn, err := c.CommonNameFor(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sans, err := c.SANsFor(name, config.LocalHost())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	u := &Unit{s: s, name: name, bag: map[string]string{},
		want: protocol.Want{CommonName: cn, SANs: sans, Profile: c.Profile, RenewAt: c.RenewAt, RenewJitter: c.RenewJitter,
			Validity: c.Validity, KeyAlgorithm: c.Key.Algorithm, KeySize: c.Key.Size},
		ownKeys: []string{protocol.SignedCertificateKey(name), protocol.RejectionKey(name)}}
	return u, nil
}

// Name is the unit's name.
func (u *Unit) Name() string { return u.name }

// join takes a lease and claims the unit's name, as a member's join does; the unit then
// decides its first step.
func (u *Unit) join(ctx context.Context, client *clientv3.Client) error {
	u.mu.Lock()
	u.client = client
	u.mu.Unlock()
	if err := u.claim(ctx); err != nil {
		return err
	}
	s := u.s
	s.mu.Lock()
	s.units[u.name] = u
	for _, k := range u.ownKeys {
		s.byKey[k] = u
	}
	s.mu.Unlock()
	s.poke(u)
	return nil
}

// claim takes a new lease and puts the unit's name and bag under it, and keeps the
// lease alive; when the client gives up on it (its renewals unanswered for a TTL), the
// unit joins again, as a member does.
func (u *Unit) claim(ctx context.Context) error {
	s := u.s
	u.mu.Lock()
	client, old, bag := u.client, u.lease, maps.Clone(u.bag)
	u.mu.Unlock()
	if old != 0 {
		client.Revoke(ctx, old) // our own lapsed lease, if etcd still holds it
	}
	lease, err := client.Grant(ctx, int64(s.opts.LeaseTTL/time.Second))
	if err != nil {
		return fmt.Errorf("%s: lease: %w", u.name, err)
	}
	ops := []clientv3.Op{clientv3.OpPut(s.keys.Member(u.name), etcd.MemberValue(false, time.Now()), clientv3.WithLease(lease.ID)),
		clientv3.OpDelete(s.keys.Away(u.name))}
	for k, v := range bag {
		ops = append(ops, clientv3.OpPut(s.keys.Field(u.name, k), v, clientv3.WithLease(lease.ID)))
	}
	resp, err := client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.keys.Member(u.name)), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("%s: join: %w", u.name, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: join: the name is held by another lease", u.name)
	}
	kctx, cancel := context.WithCancel(s.ctx)
	alive, err := client.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		return fmt.Errorf("%s: keepalive: %w", u.name, err)
	}
	u.mu.Lock()
	u.lease, u.cancel = lease.ID, cancel
	u.mu.Unlock()
	go func() {
		for range alive { // the client stops renewing a lease whose answers are not read
		}
		if kctx.Err() != nil {
			return // left, or the swarm closed
		}
		s.lost.Add(1)
		for s.ctx.Err() == nil {
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err := u.claim(ctx)
			cancel()
			if err == nil {
				s.poke(u)
				return
			}
			s.opts.Log.Warn("swarm: joining again failed; retrying", "unit", u.name, "error", err)
			time.Sleep(time.Second)
		}
	}()
	return nil
}

// Leave departs as a unit whose host died does: its lease goes (revoked here rather
// than left to expire, so that the departure's moment is known), and no note is left.
func (s *Swarm) Leave(ctx context.Context, u *Unit) error {
	u.mu.Lock()
	u.left = true
	lease, client, cancel := u.lease, u.client, u.cancel
	if u.wake != nil {
		u.wake.Stop()
	}
	u.mu.Unlock()
	s.mu.Lock()
	delete(s.units, u.name)
	for _, k := range u.ownKeys {
		delete(s.byKey, k)
	}
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if client == nil {
		return nil
	}
	if _, err := client.Revoke(ctx, lease); err != nil {
		return fmt.Errorf("%s: revoke lease: %w", u.name, err)
	}
	return nil
}

// run decides and acts until the unit settles, as an agent's protocol loop does, then
// publishes its status.
func (u *Unit) run(ctx context.Context) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.left {
		return
	}
	for range 8 {
		leaderData := u.s.view(u)
		v := protocol.View{Unit: u.name, Units: map[string]map[string]string{u.name: u.bag}, LeaderData: leaderData,
			Local: protocol.Local{Pending: u.pending, Installed: u.installed, CRLPEM: u.crl}, Want: u.want, Now: time.Now(),
			Parsed: u.s.parsed}
		d := protocol.Decide(v)
		u.schedule(d.WakeAt)
		if len(d.Actions) == 0 {
			u.err = ""
			u.publishStatus(ctx, d)
			return
		}
		for _, act := range d.Actions {
			if err := u.apply(ctx, act); err != nil {
				u.err = err.Error()
				u.schedule(time.Now().Add(time.Second))
				return
			}
		}
	}
	u.schedule(time.Now().Add(time.Second)) // still acting: look again soon
}

func (u *Unit) schedule(at time.Time) {
	if u.wake != nil {
		u.wake.Stop()
		u.wake = nil
	}
	if at.IsZero() {
		return
	}
	u.wake = time.AfterFunc(max(time.Until(at), 10*time.Millisecond), func() { u.s.poke(u) })
}

func (u *Unit) apply(ctx context.Context, act protocol.Action) error {
	switch act := act.(type) {
	case protocol.CreateCSR:
		key := u.key
		if !act.ReuseKey || key == nil {
			var err error
			if key, err = certutil.NewKey(act.Request.Key); err != nil {
				return fmt.Errorf("key: %w", err)
			}
		}
		csr, err := certutil.NewCSRForKey(act.Request, key)
		if err != nil {
			return fmt.Errorf("CSR: %w", err)
		}
		if err := u.write(ctx, map[string]string{protocol.KeyCSR: string(csr.CSRPEM), protocol.KeyProfile: act.Profile}); err != nil {
			return err
		}
		u.pendingKey, u.pending = key, &protocol.Pending{CSRPEM: string(csr.CSRPEM), PublicKey: key.Public()}
	case protocol.WithdrawCSR:
		return u.write(ctx, map[string]string{protocol.KeyCSR: ""})
	case protocol.InstallCertificate:
		certs, err := certutil.ParseCertificates([]byte(act.ChainPEM))
		if err != nil || len(certs) == 0 {
			return fmt.Errorf("certificate: %v", err)
		}
		u.key, u.pendingKey, u.pending = u.pendingKey, nil, nil
		u.installed = &protocol.Installed{Cert: certs[0], CAPEM: act.CAPEM}
		u.chainPEM, u.certified = act.ChainPEM, time.Now()
	case protocol.InstallCA:
		if u.installed != nil {
			u.installed = &protocol.Installed{Cert: u.installed.Cert, CAPEM: act.CAPEM}
		}
	case protocol.InstallCRL:
		u.crl = act.PEM
	default:
		return fmt.Errorf("a unit that does not lead was asked to %T", act)
	}
	return nil
}

// publishStatus writes the status fields that changed, as an agent does when it settles.
func (u *Unit) publishStatus(ctx context.Context, d protocol.Decision) {
	st := protocol.UnitStatus{State: d.State, Detail: d.Detail, Error: d.LeaderProblem}
	if u.installed != nil {
		st.Serial, st.NotAfter = u.installed.Cert.SerialNumber.Text(16), u.installed.Cert.NotAfter
		st.Trusts = u.s.parsed.TrustsOf(u.installed.CAPEM)
	}
	changed := map[string]string{}
	for k, v := range st.Fields() {
		if u.bag[k] != v {
			changed[k] = v
		}
	}
	if len(changed) > 0 {
		if err := u.write(ctx, changed); err != nil {
			u.err = err.Error()
		}
	}
}

// write merges kv into the bag in etcd, bound to the unit's lease; "" deletes.
func (u *Unit) write(ctx context.Context, kv map[string]string) error {
	ops := make([]clientv3.Op, 0, len(kv))
	for k, v := range kv {
		key := u.s.keys.Field(u.name, k)
		if v == "" {
			ops = append(ops, clientv3.OpDelete(key))
		} else {
			ops = append(ops, clientv3.OpPut(key, v, clientv3.WithLease(u.lease)))
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := u.client.Txn(wctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("write bag: %w", err)
	}
	for k, v := range kv {
		if v == "" {
			delete(u.bag, k)
		} else {
			u.bag[k] = v
		}
	}
	return nil
}

func (u *Unit) lastError() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// Material is what the unit holds now, as its files would: its certificate (nil
// before the first), the CA bundle it trusts and its CRL.
type Material struct {
	Cert      *x509.Certificate
	TLS       *tls.Certificate
	CAPEM     string
	CRLPEM    string
	Bag       map[string]string
	Certified time.Time
}

// Material returns what the unit holds now.
func (u *Unit) Material() Material {
	u.mu.Lock()
	defer u.mu.Unlock()
	m := Material{CRLPEM: u.crl, Bag: maps.Clone(u.bag), Certified: u.certified}
	if u.installed == nil {
		return m
	}
	m.Cert, m.CAPEM = u.installed.Cert, u.installed.CAPEM
	var der [][]byte
	for rest := []byte(u.chainPEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		der = append(der, b.Bytes)
	}
	m.TLS = &tls.Certificate{Certificate: der, PrivateKey: u.key, Leaf: u.installed.Cert}
	return m
}

// Certified says whether the unit holds a certificate.
func (u *Unit) Certified() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.installed != nil
}

// Holds says whether the unit trusts exactly the CA bundle caPEM and holds a
// certificate signed by its first CA (the group's signing CA).
func (u *Unit) Holds(caPEM string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.installed == nil || u.installed.CAPEM != caPEM {
		return false
	}
	cas, err := certutil.ParseCertificates([]byte(caPEM))
	return err == nil && len(cas) > 0 && u.installed.Cert.CheckSignatureFrom(cas[0]) == nil
}

// CRL is the CRL the unit holds, PEM.
func (u *Unit) CRL() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.crl
}
