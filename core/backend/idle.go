package backend

import (
	"time"

	"github.com/tlsrelay/tlsrelay/core/config"
)

// Plugins on demand: a unit needs its plugins once per renewal (a CSR to make), a
// secret fetch, or while it leads (signing). With Options.IdleStop, a plugin no call
// has used for that long is stopped, and the next For starts it again, not counted as
// a restart; plugins a unit keeps warm (KeepWarm: the signer while it leads) stay.

// used notes that r served a call now.
func (r *running) used() { r.lastUse.Store(time.Now().UnixNano()) }

func (r *running) idleFor(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, r.lastUse.Load()))
}

// KeepWarm asks the host to keep the backend of role running while keep holds (a
// leading unit's signer); the units of a process that share the host each ask, and
// the backend is kept while any of them does.
func (h *Host) KeepWarm(role config.Role, keep bool) {
	name := h.opts.Roles.Backend(role)
	if name == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if keep {
		h.warm[name]++
	} else if h.warm[name] > 0 {
		h.warm[name]--
	}
}

// reapIdle stops, every tick until stop closes, the plugins idle for IdleStop.
func (h *Host) reapIdle(stop <-chan struct{}) {
	tick := max(h.opts.IdleStop/4, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			h.stopIdle(now)
		}
	}
}

func (h *Host) stopIdle(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, r := range h.running {
		if h.warm[name] > 0 || r.idleFor(now) < h.opts.IdleStop || r.client.Exited() {
			continue
		}
		delete(h.running, name)
		h.started[name] = false // its next start is on demand, not a restart
		if h.opts.OnIdleStop != nil {
			h.opts.OnIdleStop(name)
		}
		h.log.Debug("stopping idle plugin; it starts again when needed", "plugin", name, "idle", r.idleFor(now).Round(time.Second))
		go r.client.Kill()
	}
}
