package unit

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/tlsrelay/tlsrelay/core/config"
)

// ReloadOnSIGHUP loads the config again with load on each SIGHUP until ctx ends, and
// delivers each one that loads and passes Check (for Options.Reload). One that does not
// is refused: the error is logged, naming the file and key, and the unit keeps running
// the config it has.
func ReloadOnSIGHUP(ctx context.Context, load func() (*config.Config, error), log hclog.Logger) <-chan *config.Config {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	out := make(chan *config.Config)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			cfg, err := load()
			if err == nil {
				err = Check(cfg)
			}
			if err != nil {
				log.Error("SIGHUP: the config was not reloaded; the running one is kept", "error", err)
				continue
			}
			log.Info("SIGHUP: reloading the config")
			select {
			case out <- cfg:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
