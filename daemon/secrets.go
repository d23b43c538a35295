package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// openSealer reads the keys that seal the store's secrets from
// secrets.key_file. On bolt with the key unset it generates the default
// file at the first start, but never for a store that already holds
// sealed secrets: a new key would not open them, and every token, session
// and JWT would be lost with the old one.
func openSealer(ctx context.Context, cfg config.Config, store tokenstore.Store, log *slog.Logger) (*tokenstore.Sealer, error) {
	path, generated := cfg.SecretsKeyFile()
	data, err := os.ReadFile(path)
	if generated && errors.Is(err, fs.ErrNotExist) {
		data, err = newKeyFile(ctx, cfg, store, path)
		if err == nil {
			log.Info("generated the secrets key file: keep it out of database backups, and restore it with the database", "path", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("secrets.key_file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the secrets key file can be read by other users than its owner (chmod 600 it)", "path", path, "mode", fi.Mode().Perm().String())
	}
	keys, err := tokenstore.ParseSecretKeys(data)
	if err != nil {
		return nil, fmt.Errorf("secrets.key_file: %s: %w", path, err)
	}
	return tokenstore.NewSealer(keys)
}

// CheckSecretsKeyFile reads and parses secrets.key_file for `handoff
// config check`, without opening the store. A default key file not made
// yet is fine: the first start makes it.
func CheckSecretsKeyFile(cfg config.Config) error {
	path, generated := cfg.SecretsKeyFile()
	data, err := os.ReadFile(path)
	switch {
	case generated && errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("secrets.key_file: %w", err)
	}
	if _, err := tokenstore.ParseSecretKeys(data); err != nil {
		return fmt.Errorf("secrets.key_file: %s: %w", path, err)
	}
	return nil
}

// newKeyFile writes a fresh key to path, created 0600 and never over an
// existing file, unless the store's secrets are sealed already.
func newKeyFile(ctx context.Context, cfg config.Config, store tokenstore.Store, path string) ([]byte, error) {
	sealed, err := tokenstore.HasSealedSecrets(ctx, store)
	if err != nil {
		return nil, err
	}
	if sealed {
		return nil, fmt.Errorf("%s is missing, and the store %s holds secrets sealed with it: restore the key file (a new key would not open them)", path, cfg.StorePath())
	}
	line := tokenstore.NewSecretKeyLine()
	if err := writeNewFile(path, []byte(line)); err != nil {
		return nil, err
	}
	return []byte(line), nil
}

// writeNewFile creates path with mode 0600 and writes data to it. It
// refuses to follow a symlink or replace a file there (O_EXCL).
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
