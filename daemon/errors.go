package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/handoffd/handoff/tokenstore"
)

// AppwriteVersion is the Appwrite server version this daemon answers as:
// in error bodies, and against the X-Appwrite-Response-Format an SDK
// sends (an SDK built for a newer version gets X-Appwrite-Warning, which
// the SDKs print on every response). It is the newest format a current
// SDK declares: the web SDK appwrite 28.0.0 sends 2.3.0 (27.0.0 sent
// 2.0.0, node-appwrite 27.1.0 sends 1.9.5). The models this daemon serves
// are the same in all of them, by the SDKs' own type definitions: Session,
// Token and JWT are unchanged, and User only gained the optional
// passwordPwned, which a daemon that keeps no passwords leaves out.
const AppwriteVersion = "2.3.0"

// apiError is an error with its Appwrite status and type.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func errorf(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// The default messages of Appwrite's error catalogue.
var (
	errRouteNotFound    = &apiError{404, "general_route_not_found", "The requested route was not found. Please refer to the API docs and try again."}
	errUserNotFound     = &apiError{404, "user_not_found", "User with the requested ID could not be found."}
	errUserExists       = &apiError{409, "user_already_exists", "A user with the same id, email, or phone already exists in this project."}
	errEmailExists      = &apiError{409, "user_email_already_exists", "A user with the same email already exists in this project."}
	errInvalidToken     = &apiError{401, "user_invalid_token", "Invalid token passed in the request."}
	errSessionExists    = &apiError{401, "user_session_already_exists", "Creation of a session is prohibited when a session is active."}
	errSessionNotFound  = &apiError{404, "user_session_not_found", "The current user session could not be found."}
	errJWTInvalid       = &apiError{401, "user_jwt_invalid", "The JWT token is invalid. Please check the signature and expiry."}
	errJWTAndCookie     = &apiError{403, "user_jwt_and_cookie_set", "Cannot use JWT and a session at the same time. Please remove one of them."}
	errJWTCreation      = &apiError{403, "user_jwt_creation_denied", "A JWT cannot be created from a JWT-authenticated request."}
	errUserBlocked      = &apiError{403, "user_blocked", "The current user has been blocked."}
	errProjectMissing   = &apiError{403, "project_id_missing", "The project ID is missing. Please add the X-Appwrite-Project header."}
	errProjectNotFound  = &apiError{404, "project_not_found", "Project with the requested ID could not be found. Please check the value of the X-Appwrite-Project header to ensure the correct project ID is being used."}
	errKeyExpired       = &apiError{401, "project_key_expired", "The project key has expired. Please generate a new key."}
	errRateLimit        = &apiError{429, "general_rate_limit_exceeded", "Rate limit for the current endpoint has been exceeded. Please try again after some time."}
	errBodyTooLarge     = &apiError{413, "general_argument_invalid", "Request body is too large."}
	errServer           = &apiError{500, "general_server_error", "Server Error"}
	errCursorNotFound   = &apiError{400, "general_cursor_not_found", "The cursor is invalid. This can happen if the item represented by the cursor has been deleted."}
	errUnavailable      = &apiError{503, "provider_unavailable", "The provider is unavailable. Please try again later."}
	errProviderNotFound = &apiError{404, "provider_not_found", "Provider with the requested name could not be found."}
	errStoreUnavailable = &apiError{503, "store_unavailable", "The store is unavailable. Please try again later."}
)

// The errors of providers and their flows.
var (
	errInvalidCredentials = &apiError{401, "user_invalid_credentials", "Invalid credentials. Please check the payload and try again."}
	errUnlinked           = &apiError{401, "user_unauthorized", "No user is linked to this identity, and the provider may not create one."}
	errUnsupported        = &apiError{400, "provider_unsupported", "The provider does not support this operation."}
	errRedirectOnly       = &apiError{400, "provider_unsupported", "The provider delivers by redirect only. Please sign in with the OAuth2 redirect flow."}
	errOutOfBandOnly      = &apiError{400, "provider_unsupported", "The provider delivers its secrets out of band, so it cannot open a session in the browser. Please sign in with createOAuth2Token."}
	errGuardOnly          = &apiError{400, "provider_unsupported", "The provider only guards other providers' sign-ins. Please sign in with one of them."}
	errDelivery           = &apiError{503, "provider_delivery_failed", "The code could not be delivered. Please try again later."}
	errInvalidSuccessURL  = &apiError{400, "project_invalid_success_url", "Invalid redirect URL for OAuth success."}
	errInvalidFailureURL  = &apiError{400, "project_invalid_failure_url", "Invalid redirect URL for OAuth failure."}
	errFlowNotFound       = &apiError{400, "user_oauth2_bad_request", "The sign-in flow is unknown, used or expired. Please start again."}
	errFlowOtherBrowser   = &apiError{401, "user_oauth2_bad_request", "The sign-in was begun in another browser. Please start again."}
)

func invalidParam(param, reason string) *apiError {
	return &apiError{400, "general_argument_invalid", "Invalid `" + param + "` param: " + reason}
}

// invalidIdentity is a plugin's identity the core refused: a 502, since the
// fault is the upstream's (the plugin, or the IdP behind it), which should
// have refused the proof or cleaned what it reports, not the client's,
// which often cannot see or change it (an IdP's subject). The answer names
// the field and the rule, never the value.
func invalidIdentity(e *tokenstore.IdentityError) *apiError {
	return &apiError{502, "provider_invalid_identity", "The provider reported an identity this server cannot accept: its " + e.Field + " " + e.Reason + "."}
}

func missingParam(param string) *apiError {
	return &apiError{400, "general_argument_invalid", "Param \"" + param + "\" is not optional."}
}

// toAPIError is the one place an error becomes an HTTP answer. Errors it
// does not know become a generic 500 and are logged, never echoed. Both
// logs of a store failure are rate limited (logLimited): one line per
// logInterval, with the count held back.
func (d *Daemon) toAPIError(r *http.Request, err error) *apiError {
	var (
		ae  *apiError
		arg *tokenstore.ArgumentError
		bad *tokenstore.IdentityError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &arg):
		return invalidParam(arg.Param, arg.Reason)
	case errors.As(err, &bad):
		d.log.WarnContext(r.Context(), "provider reported an invalid identity", "provider", bad.Provider, "field", bad.Field, "reason", bad.Reason)
		return invalidIdentity(bad)
	case errors.Is(err, tokenstore.ErrUserNotFound):
		return errUserNotFound
	case errors.Is(err, tokenstore.ErrUserExists):
		return errUserExists
	case errors.Is(err, tokenstore.ErrEmailExists):
		return errEmailExists
	case errors.Is(err, tokenstore.ErrInvalidToken):
		return errInvalidToken
	case errors.Is(err, tokenstore.ErrSessionNotFound):
		return errSessionNotFound
	case errors.Is(err, tokenstore.ErrJWTInvalid):
		return errJWTInvalid
	case errors.Is(err, tokenstore.ErrCursorNotFound):
		return errCursorNotFound
	case errors.Is(err, tokenstore.ErrKeyExpired):
		return errKeyExpired
	case errors.Is(err, tokenstore.ErrUnavailable):
		d.logLimited(r.Context(), slog.LevelWarn, "store unavailable", "method", r.Method, "path", r.URL.Path, "err", err.Error())
		return errStoreUnavailable
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return &apiError{408, "general_request_timeout", "The client closed the request."}
	}
	if mapped := mapProviderError(err); mapped != nil {
		return mapped
	}
	d.logLimited(r.Context(), slog.LevelError, "request failed", "method", r.Method, "path", r.URL.Path, "err", err.Error())
	return errServer
}

type errorBody struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

// writeError answers with err in Appwrite's error shape.
func (d *Daemon) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := d.toAPIError(r, err)
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Expires", "0")
	h.Set("Pragma", "no-cache")
	if ae.Status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1") // a restarting store or plugin is back in about a second
	}
	writeJSON(w, ae.Status, errorBody{Message: ae.Message, Code: ae.Status, Type: ae.Type, Version: AppwriteVersion})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
