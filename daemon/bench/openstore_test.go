package bench

import (
	"context"
	"log/slog"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
	"github.com/handoffd/handoff/tokenstore/bolt"
	"github.com/handoffd/handoff/tokenstore/postgres"
)

// openStore is main.go's store choice, for the daemons the tests start.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (tokenstore.Store, error) {
	if cfg.Store.Driver == "postgres" {
		return postgres.Open(ctx, postgres.Options{DSN: cfg.Store.DSN, MaxConns: int32(cfg.Store.MaxConns), Writers: cfg.Store.Writers, Timeout: cfg.Store.Timeout, Logger: log})
	}
	return bolt.Open(cfg.StorePath(), bolt.Options{Timeout: time.Second})
}
