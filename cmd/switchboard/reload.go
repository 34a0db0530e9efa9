package main

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"

	"github.com/switchboard/switchboard/gateway/config"
	"github.com/switchboard/switchboard/gateway/trunk"
)

// reload reads the config file again and puts its accounts, routes, DIDs
// and trusted trunk sources in force, as SIGHUP asks. Either all of them
// change or, when the file does not load, none: the error says why, and
// the gateway goes on with what it had. Calls and registrations in
// progress are kept. Trunk registrations (and listeners and other
// settings from the environment) change only with a restart; reload says
// so in the log when the file asks for a change there.
func (s *sipStack) reload(ctx context.Context, cfg Config, logger *slog.Logger) error {
	var file *config.File
	if cfg.ConfigFile != "" {
		f, err := config.Options{Domain: cfg.Domain}.Load(cfg.ConfigFile)
		if err != nil {
			return err
		}
		file = f
	}
	routing, err := newTrunkRouting(cfg.Domain, file)
	if err != nil {
		return fmt.Errorf("trunks: %w", err)
	}
	if err := routing.resolveTrusted(ctx, s.dns); err != nil {
		logger.Warn("reload: resolve trunk hosts", "err", err)
	}
	accts := loadAccounts(cfg, file)
	// Set changes nothing when an account is bad: the routing is swapped
	// only after it succeeded.
	if err := s.accounts.Set(accts); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	s.routing.cur.Store(routing)
	if !reflect.DeepEqual(registeringTrunks(file), s.registering) {
		logger.Warn("reload: trunk registrations changed in the config file; they take effect at the next restart")
	}
	logger.Info("config reloaded", "file", cfg.ConfigFile, "accounts", len(accts), "trunks", len(routing.trunks))
	return nil
}

// registeringTrunks returns the trunks of f that register with their
// provider.
func registeringTrunks(f *config.File) []trunk.Trunk {
	if f == nil {
		return nil
	}
	var out []trunk.Trunk
	for _, t := range f.Trunks {
		if t.Register {
			out = append(out, t)
		}
	}
	return out
}
