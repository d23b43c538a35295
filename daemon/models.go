package daemon

import (
	"context"
	"log/slog"

	"github.com/handoffd/handoff/tokenstore"
)

// The response models, field for field and in order, as Appwrite's
// (src/Appwrite/Utopia/Response/Model). encoding/json keeps struct order.

type userModel struct {
	ID                string         `json:"$id"`
	CreatedAt         string         `json:"$createdAt"`
	UpdatedAt         string         `json:"$updatedAt"`
	Name              string         `json:"name"`
	Registration      string         `json:"registration"`
	Status            bool           `json:"status"`
	Labels            []string       `json:"labels"`
	PasswordUpdate    string         `json:"passwordUpdate"`
	Email             string         `json:"email"`
	Phone             string         `json:"phone"`
	EmailVerification bool           `json:"emailVerification"`
	PhoneVerification bool           `json:"phoneVerification"`
	MFA               bool           `json:"mfa"`
	Prefs             map[string]any `json:"prefs"`
	Targets           []any          `json:"targets"`
	AccessedAt        string         `json:"accessedAt"`
}

func newUserModel(u tokenstore.User) userModel {
	labels := u.Labels
	if labels == nil {
		labels = []string{}
	}
	prefs := u.Prefs
	if prefs == nil {
		prefs = map[string]any{}
	}
	return userModel{
		ID:                u.ID,
		CreatedAt:         tokenstore.FormatTime(u.CreatedAt),
		UpdatedAt:         tokenstore.FormatTime(u.UpdatedAt),
		Name:              u.Name,
		Registration:      tokenstore.FormatTime(u.CreatedAt),
		Status:            u.Status,
		Labels:            labels,
		Email:             u.Email,
		Phone:             u.Phone,
		EmailVerification: u.EmailVerification,
		PhoneVerification: u.PhoneVerification,
		Prefs:             prefs,
		Targets:           []any{},
		AccessedAt:        tokenstore.FormatTime(u.AccessedAt),
	}
}

type userList struct {
	Total int         `json:"total"`
	Users []userModel `json:"users"`
}

type tokenModel struct {
	ID        string `json:"$id"`
	CreatedAt string `json:"$createdAt"`
	UserID    string `json:"userId"`
	Secret    string `json:"secret"`
	Expire    string `json:"expire"`
	Phrase    string `json:"phrase"`
}

func newTokenModel(t tokenstore.Token, secret string) tokenModel {
	return tokenModel{
		ID:        t.ID,
		CreatedAt: tokenstore.FormatTime(t.CreatedAt),
		UserID:    t.UserID,
		Secret:    secret,
		Expire:    tokenstore.FormatTime(t.Expire),
	}
}

type sessionModel struct {
	ID                        string   `json:"$id"`
	CreatedAt                 string   `json:"$createdAt"`
	UpdatedAt                 string   `json:"$updatedAt"`
	UserID                    string   `json:"userId"`
	Expire                    string   `json:"expire"`
	Provider                  string   `json:"provider"`
	ProviderUID               string   `json:"providerUid"`
	ProviderAccessToken       string   `json:"providerAccessToken"`
	ProviderAccessTokenExpiry string   `json:"providerAccessTokenExpiry"`
	ProviderRefreshToken      string   `json:"providerRefreshToken"`
	IP                        string   `json:"ip"`
	OSCode                    string   `json:"osCode"`
	OSName                    string   `json:"osName"`
	OSVersion                 string   `json:"osVersion"`
	ClientType                string   `json:"clientType"`
	ClientCode                string   `json:"clientCode"`
	ClientName                string   `json:"clientName"`
	ClientVersion             string   `json:"clientVersion"`
	ClientEngine              string   `json:"clientEngine"`
	ClientEngineVersion       string   `json:"clientEngineVersion"`
	DeviceName                string   `json:"deviceName"`
	DeviceBrand               string   `json:"deviceBrand"`
	DeviceModel               string   `json:"deviceModel"`
	CountryCode               string   `json:"countryCode"`
	CountryName               string   `json:"countryName"`
	Current                   bool     `json:"current"`
	Factors                   []string `json:"factors"`
	Secret                    string   `json:"secret"`
	MFAUpdatedAt              string   `json:"mfaUpdatedAt"`
}

// newSessionModel renders s; secret is the credential, shown only to API
// key callers ("" otherwise); pt are the IdP's tokens s carries, opened
// only for the session's owner and key holders, the only callers that
// ever see a session, as in Appwrite.
func newSessionModel(s tokenstore.Session, current bool, secret string, pt tokenstore.ProviderTokens) sessionModel {
	factors := s.Factors
	if factors == nil {
		factors = []string{}
	}
	ua := parseUserAgent(s.UserAgent)
	return sessionModel{
		ID:                        s.ID,
		CreatedAt:                 tokenstore.FormatTime(s.CreatedAt),
		UpdatedAt:                 tokenstore.FormatTime(s.UpdatedAt),
		UserID:                    s.UserID,
		Expire:                    tokenstore.FormatTime(s.Expire),
		Provider:                  s.Provider,
		ProviderUID:               s.ProviderUID,
		ProviderAccessToken:       pt.AccessToken,
		ProviderAccessTokenExpiry: tokenstore.FormatTime(pt.AccessTokenExpiry),
		ProviderRefreshToken:      pt.RefreshToken,
		IP:                        s.IP,
		OSName:                    ua.OS,
		ClientType:                ua.ClientType,
		ClientName:                ua.Client,
		ClientVersion:             ua.ClientVersion,
		CountryCode:               "--",
		CountryName:               "Unknown",
		Current:                   current,
		Factors:                   factors,
		Secret:                    secret,
	}
}

// providerTokens opens the IdP's tokens s carries. Tokens that do not
// open (sealed under a key no longer in the key file) render as none, and
// the reason, never a token, goes to the log.
func (d *Daemon) providerTokens(ctx context.Context, s tokenstore.Session) tokenstore.ProviderTokens {
	pt, err := d.core.ProviderTokens(s)
	if err != nil {
		d.logLimited(ctx, slog.LevelWarn, "a session's provider tokens do not open", "session", s.ID, "err", err.Error())
	}
	return pt
}

type sessionList struct {
	Total    int            `json:"total"`
	Sessions []sessionModel `json:"sessions"`
}

type jwtModel struct {
	JWT string `json:"jwt"`
}
