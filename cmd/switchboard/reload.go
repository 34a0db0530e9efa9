package main

import (
	"context"
	"log/slog"

	"github.com/switchboard/switchboard/gateway/trunk"
)

// reload reads the config file again and has the gateway put its
// accounts, routes, DIDs and trusted trunk sources in force, as SIGHUP
// asks: all of them or, when the file does not load, none; the error says
// why, and the gateway goes on with what it had.
func (s *sipStack) reload(ctx context.Context, cfg Config, logger *slog.Logger) error {
	file, err := loadFile(cfg)
	if err != nil {
		return err
	}
	var trunks []trunk.Trunk
	var routes []trunk.Route
	if file != nil {
		trunks, routes = file.Trunks, file.Routes
	}
	if err := s.gw.Reload(ctx, loadAccounts(cfg, file), trunks, routes); err != nil {
		return err
	}
	logger.Debug("config file reloaded", "file", cfg.ConfigFile)
	return nil
}
