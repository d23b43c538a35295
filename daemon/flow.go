package daemon

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/providers"
	"github.com/handoffd/handoff/providers/sdk"
	"github.com/handoffd/handoff/tokenstore"
)

// provider is a configured verifier with its delivery.
type provider struct {
	cfg     config.Provider
	plugin  *providers.Provider
	webhook *webhookSender
	email   *emailSender
	sms     *smsSender
}

// channel is where this provider's secret goes in a sign-in, decided by
// secretChannel from what the plugin reports now (a restarted plugin may
// report otherwise than at start).
func (p *provider) channel(in signIn) channel {
	return secretChannel(in, p.cfg.Deliver.Via, p.plugin.Info().ProvesIdentity)
}

// flowNamespace keeps redirect flows in flight, in the store's KV space,
// so any replica can finish a flow another began.
const flowNamespace = "_flows"

// flowTTL is how long a browser has at the IdP.
const flowTTL = 10 * time.Minute

// flow is a redirect flow between Begin and the callback.
type flow struct {
	Provider string `json:"provider"`
	Success  string `json:"success"`
	Failure  string `json:"failure"`
	State    []byte `json:"state"`
	Browser  []byte `json:"browser"` // SHA-256 of the binding cookie's value
	// Session marks a flow begun by createOAuth2Session: its callback
	// opens the session and sets the cookies instead of minting a token.
	Session bool `json:"session,omitempty"`
}

// flowCookie names the cookie that binds a flow to the browser that began
// it (RFC 6749 section 10.12): a callback URL taken from one browser and
// opened in another finds no cookie there and is refused, so nobody can
// sign a victim in to the attacker's account. The name carries a hash of
// the state, so flows in two tabs keep a cookie each.
func flowCookie(state string) string {
	h := sha256.Sum256([]byte(state))
	return "handoff_flow_" + hex.EncodeToString(h[:8])
}

// mapProviderError maps the plugin contract's error codes to answers.
func mapProviderError(err error) *apiError {
	var msg string
	var ce *sdk.Error
	if errors.As(err, &ce) {
		msg = ce.Message
	}
	with := func(e *apiError) *apiError {
		if msg == "" {
			return e
		}
		return &apiError{e.Status, e.Type, msg}
	}
	switch {
	case errors.Is(err, sdk.ErrInvalidCredentials):
		return with(errInvalidCredentials)
	case errors.Is(err, sdk.ErrInvalidRequest):
		return with(&apiError{400, "general_argument_invalid", "The payload is invalid."})
	case errors.Is(err, sdk.ErrUnavailable), errors.Is(err, sdk.ErrMisconfigured):
		return errUnavailable // the operator's to fix: the client learns no more
	case errors.Is(err, providers.ErrUnsupported):
		return errUnsupported
	case errors.Is(err, tokenstore.ErrIdentityUnlinked):
		return errUnlinked
	case errors.Is(err, errUnavailableSMTP):
		return errDelivery
	}
	return nil
}

func (d *Daemon) providerRoutes(api func(pattern, scope string, h handlerFunc)) {
	api("GET /v1/providers", "public", d.listProviders)
	api("POST /v1/providers/{name}/verify", "sessions.write", d.verify)
	api("GET /v1/account/tokens/oauth2/{name}", "sessions.write", d.beginOAuth2)
	api("GET /v1/account/sessions/oauth2/{name}", "sessions.write", d.beginOAuth2Session)
	api("GET /v1/account/sessions/oauth2/callback/{name}/{project}", "public", d.completeOAuth2)
	api("POST /v1/account/sessions/oauth2/callback/{name}/{project}", "public", d.completeOAuth2)
	api("POST /v1/users/{userId}/providers/{name}", "users.write", d.enroll)
}

// startProviders launches every configured provider's plugin. A provider
// whose first start fails fails New, unless it is optional: then it is
// retried with backoff while the rest serve. A plugin that
// reports in Describe that it does not prove identity while its provider
// delivers in band fails the start, naming the key: that is a config
// error, found only once the plugin has said what it is.
func (d *Daemon) startProviders(ctx context.Context, opts Options) error {
	d.provs.Store(&providerSet{byName: map[string]*provider{}})
	d.host = providers.New(providers.Options{
		Builtins:   opts.Builtins,
		Executable: opts.Executable,
		KV:         d.pluginKV,
		Logger:     d.log,
		RuntimeDir: opts.RuntimeDir,
	})
	if len(d.cfg.Providers) == 0 {
		return nil
	}
	set := &providerSet{byName: map[string]*provider{}, list: d.cfg.Providers}
	specs := make([]providers.Spec, 0, len(d.cfg.Providers))
	for _, pc := range d.cfg.Providers {
		spec, err := providerSpec(pc)
		if err != nil {
			return err
		}
		specs = append(specs, spec)
		if set.byName[pc.Name], err = d.newProvider(pc); err != nil {
			return err
		}
	}
	d.provs.Store(set)
	if err := d.host.Start(ctx, specs); err != nil {
		return fmt.Errorf("%w\n(a provider the daemon may serve without, retried until it starts, sets optional: true)", err)
	}
	up := map[string]bool{}
	for _, st := range d.host.Status() {
		if p, ok := set.byName[st.Name]; ok {
			p.plugin, _ = d.host.Provider(st.Name)
			up[st.Name] = st.Health == providers.HealthUp
		}
	}
	// A plugin that did not start has said nothing yet; should it come up
	// later saying it does not prove identity, secretChannel refuses its
	// sign-ins.
	return d.cfg.ValidateDelivery(func(pc config.Provider) (bool, bool) {
		p := set.byName[pc.Name]
		if !up[pc.Name] || p.plugin == nil {
			return false, false
		}
		return p.plugin.Info().ProvesIdentity, true
	})
}

// newProvider is pc with its delivery's senders; its plugin is set once
// the host has it.
func (d *Daemon) newProvider(pc config.Provider) (*provider, error) {
	p := &provider{cfg: pc}
	var err error
	switch pc.Deliver.Via {
	case config.DeliverWebhook:
		if p.webhook, err = newWebhookSender(pc.Deliver.Webhook, d.log.With("provider", pc.Name)); err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		p.webhook.onDelivered = func() { d.metrics.delivered("webhook", nil) }
		p.webhook.onGiveUp = d.webhookGaveUp
	case config.DeliverEmail:
		if p.email, err = newEmailSender(pc.Deliver.Email); err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
	case config.DeliverSMS:
		if p.sms, err = newSMSSender(pc.Deliver.SMS, d.log.With("provider", pc.Name)); err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
	case config.DeliverResponse, config.DeliverRedirect, "":
	}
	return p, nil
}

// providerSpec is what the host needs to run pc's plugin.
func providerSpec(pc config.Provider) (providers.Spec, error) {
	raw, err := json.Marshal(pc.Config)
	if err != nil {
		return providers.Spec{}, fmt.Errorf("provider %s: config: %w", pc.Name, err)
	}
	spec := providers.Spec{Name: pc.Name, Kind: pc.Kind, Config: raw, Timeout: pc.Timeout, Optional: pc.Optional}
	if pc.Plugin != nil {
		spec.External = &providers.External{Path: pc.Plugin.Path, SHA256: pc.Plugin.SHA256, Args: pc.Plugin.Args, Env: pc.Plugin.Env}
	}
	return spec, nil
}

// lookupProvider finds a configured provider; one that is not up answers
// 503 (its plugin's calls fail with sdk.ErrUnavailable).
func (d *Daemon) lookupProvider(name string) (*provider, error) {
	p, ok := d.providerSet().byName[name]
	if !ok {
		return nil, errProviderNotFound
	}
	if p.plugin == nil {
		return nil, errUnavailable
	}
	return p, nil
}

type providerInfo struct {
	Name      string           `json:"name"`
	Kind      string           `json:"kind"`
	Flows     []string         `json:"flows"`
	Health    providers.Health `json:"health"`
	Deliver   string           `json:"deliver"`
	Restarts  *int             `json:"restarts,omitempty"`
	Attempts  *int             `json:"attempts,omitempty"` // starts tried since it was last up
	LastError *string          `json:"lastError,omitempty"`
	// LastCallError is the last call the provider's config was refused
	// in (an IdP refusing the client credentials), and when.
	LastCallError   *string    `json:"lastCallError,omitempty"`
	LastCallErrorAt *time.Time `json:"lastCallErrorAt,omitempty"`
}

func (d *Daemon) providerStatus(detail bool) []providerInfo {
	out := []providerInfo{}
	if d.host == nil {
		return out
	}
	set := d.providerSet()
	for _, st := range d.host.Status() {
		p, ok := set.byName[st.Name]
		if !ok {
			continue
		}
		info := providerInfo{Name: st.Name, Kind: p.cfg.Kind, Flows: st.Flows, Health: st.Health, Deliver: string(p.cfg.Deliver.Via)}
		if info.Kind == "" {
			info.Kind = "plugin"
		}
		if info.Flows == nil {
			info.Flows = []string{}
		}
		if detail {
			restarts, attempts, lastErr := st.Restarts, st.Attempts, d.scrub(st.LastError)
			info.Restarts, info.Attempts, info.LastError = &restarts, &attempts, &lastErr
			if st.LastCallError != "" {
				callErr, at := d.scrub(st.LastCallError), st.LastCallErrorAt.UTC()
				info.LastCallError, info.LastCallErrorAt = &callErr, &at
			}
		}
		out = append(out, info)
	}
	return out
}

func (d *Daemon) providerHealth() []providerInfo { return d.providerStatus(false) }

// listProviders answers GET /v1/providers: name, kind, flows and health
// (providers.Health: up, starting, restarting or down); API key callers
// also see restarts, start attempts, the last error, and the last call
// whose config a service refused (lastCallError: an IdP refusing the client
// credentials).
func (d *Daemon) listProviders(w http.ResponseWriter, r *http.Request, c *caller) error {
	list := d.providerStatus(c.key != nil && c.key.HasScope("providers.read"))
	writeJSON(w, http.StatusOK, map[string]any{"total": len(list), "providers": list})
	return nil
}

func (d *Daemon) sdkRequest(r *http.Request, c *caller, payload json.RawMessage) sdk.Request {
	return sdk.Request{Payload: payload, ClientIP: c.ip, UserAgent: r.UserAgent(), RequestID: requestID(r.Context())}
}

// verify is the direct flow: guards, the verifier, the identity's user, a
// minted secret, and its delivery. Its outcome is recorded as
// verify.succeeded or verify.failed.
func (d *Daemon) verify(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("name")
	userID, err := d.verifySignIn(w, r, c)
	if err != nil {
		return d.signInFailed(r, c, evVerifyFailed, name, userID, err)
	}
	return nil
}

// verifySignIn is verify's work; it returns the user id once it is known.
func (d *Daemon) verifySignIn(w http.ResponseWriter, r *http.Request, c *caller) (string, error) {
	p, err := d.lookupProvider(r.PathValue("name"))
	if err != nil {
		return "", err
	}
	// Where the secret would go is known before anything is verified, so
	// a sign-in whose secret may go nowhere spends no guard or verifier
	// call (a captcha solve, a password attempt).
	ch := p.channel(directSignIn)
	if ch == channelNone {
		return "", d.refuseDelivery(p, directSignIn)
	}
	if c.key == nil {
		if err := d.limit(w, r, "verify:"+c.limitIP, d.cfg.Limits.Verify, time.Hour); err != nil {
			return "", err
		}
	}
	payload, err := readPayload(r)
	if err != nil {
		return "", err
	}
	req := d.sdkRequest(r, c, payload)
	for _, g := range p.cfg.Guards {
		guard, err := d.lookupProvider(g)
		if err != nil {
			return "", err
		}
		start := time.Now()
		err = guard.plugin.Check(r.Context(), req)
		d.metrics.call(g, "check", start, err)
		if err != nil {
			return "", refused(reasonGuardFailed, fmt.Errorf("guard %s: %w", g, err))
		}
	}
	start := time.Now()
	id, err := p.plugin.Verify(r.Context(), req)
	d.metrics.call(p.cfg.Name, "verify", start, err)
	if err != nil {
		return "", err
	}
	if ch == channelSMS {
		// The number's SMS limit is counted before a token is minted.
		user, err := d.resolve(r.Context(), p, id)
		if err != nil {
			return user.ID, err
		}
		d.record(d.originOf(r, c), Event{Event: string(evVerifySucceeded), Provider: p.cfg.Name, UserID: user.ID})
		return user.ID, d.mintAndDeliver(w, r, c, p, user, id.Subject, ch)
	}
	// Resolve and mint in one store step: one round trip on PostgreSQL
	// for a known identity.
	user, t, secret, err := d.signIn(r.Context(), p, id, &tokenstore.MintRequest{
		Length: p.linkLength(), Expire: p.cfg.Token.Expire,
		Provider: p.cfg.Name, ProviderUID: id.Subject, IP: c.ip, UserAgent: r.UserAgent(),
	})
	if err != nil {
		return user.ID, err
	}
	d.record(d.originOf(r, c), Event{Event: string(evVerifySucceeded), Provider: p.cfg.Name, UserID: user.ID})
	return user.ID, d.deliver(w, r, c, p, user, t, secret, ch)
}

// refuseDelivery is the answer to a sign-in whose secret secretChannel
// lets go nowhere.
func (d *Daemon) refuseDelivery(p *provider, in signIn) error {
	proves := p.plugin.Info().ProvesIdentity
	switch {
	case !proves && d.providerSet().guardOnly(p.cfg.Name):
		return errGuardOnly // configured so: nothing to log
	case !proves:
		d.log.Error("sign-in refused: the plugin has not reported that it proves identity on its own, so its secret may only go out of band (deliver.via webhook, email or sms)", "provider", p.cfg.Name, "via", string(p.cfg.Deliver.Via))
	}
	return deliveryRefused(in, proves)
}

// readPayload reads a verify or enroll body: a JSON object, passed to the
// plugin as it is.
func readPayload(r *http.Request) (json.RawMessage, error) {
	var raw json.RawMessage
	err := json.NewDecoder(r.Body).Decode(&raw)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, errBodyTooLarge
	case err != nil && err.Error() == "EOF":
		return json.RawMessage("{}"), nil
	case err != nil || len(raw) == 0 || raw[0] != '{':
		return nil, errorf(400, "general_argument_invalid", "The request body must be a JSON object.")
	}
	return raw, nil
}

func (d *Daemon) resolve(ctx context.Context, p *provider, id sdk.Identity) (tokenstore.User, error) {
	user, _, _, err := d.signIn(ctx, p, id, nil)
	return user, err
}

// signIn resolves the identity a provider verified to its user and, when
// mint is not nil, mints the user's token in the same store step
// (mint.UserID is filled in). A blocked user is errUserBlocked, and gets
// no token.
func (d *Daemon) signIn(ctx context.Context, p *provider, id sdk.Identity, mint *tokenstore.MintRequest) (tokenstore.User, tokenstore.Token, string, error) {
	if id.Subject == "" {
		d.log.Error("provider returned an identity without a subject", "provider", p.cfg.Name)
		return tokenstore.User{}, tokenstore.Token{}, "", errServer
	}
	res, t, secret, err := d.core.SignIn(ctx, tokenstore.Identity{
		Provider: p.cfg.Name, Subject: id.Subject, Email: id.Email, EmailVerified: id.EmailVerified,
		Phone: id.Phone, Name: id.Name, Claims: id.Claims,
	}, tokenstore.LinkPolicy{Create: p.cfg.Users.Create, LinkByEmail: p.cfg.Users.LinkByEmail}, mint)
	if err != nil {
		return res.User, t, "", err
	}
	if !res.User.Status {
		return res.User, t, "", errUserBlocked
	}
	return res.User, t, secret, nil
}

// mintAndDeliver mints the user's secret for a direct verify and sends it
// on ch, the channel secretChannel chose: in the answer's body, or out of
// band with an empty secret in the answer. subject is the identity's at the
// provider: the session the secret opens carries it as providerUid.
func (d *Daemon) mintAndDeliver(w http.ResponseWriter, r *http.Request, c *caller, p *provider, user tokenstore.User, subject string, ch channel) error {
	if err := d.smsAllowed(r, ch, user); err != nil {
		return err
	}
	t, secret, err := d.core.Mint(r.Context(), tokenstore.MintRequest{
		UserID: user.ID, Length: p.linkLength(), Expire: p.cfg.Token.Expire,
		Provider: p.cfg.Name, ProviderUID: subject, IP: c.ip, UserAgent: r.UserAgent(),
	})
	if err != nil {
		return err
	}
	return d.deliver(w, r, c, p, user, t, secret, ch)
}

// deliver sends a token minted for a direct verify on ch: in the answer's
// body, or out of band with an empty secret in the answer.
func (d *Daemon) deliver(w http.ResponseWriter, r *http.Request, c *caller, p *provider, user tokenstore.User, t tokenstore.Token, secret string, ch channel) error {
	d.record(d.originOf(r, c), Event{Event: string(evTokenMinted), Provider: p.cfg.Name, UserID: user.ID})
	shown := ""
	if ch == channelBody {
		shown = secret
	} else if err := d.sendOutOfBand(r, c, evVerifyFailed, p, ch, newDelivery(t, secret, p.cfg.Name, user)); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, newTokenModel(t, shown))
	return nil
}

// sendOutOfBand sends a minted secret on an out-of-band channel and counts
// the delivery's outcome. A webhook that fails after the answer (its
// retries run in the background) is recorded as failEv, the sign-in's
// failure event, with reason delivery_failed: the client was told 201,
// and the secret never arrived. Any other channel is a bug and sends
// nothing.
func (d *Daemon) sendOutOfBand(r *http.Request, c *caller, failEv eventName, p *provider, ch channel, msg delivery) error {
	ctx := r.Context()
	switch ch {
	case channelWebhook:
		msg.trace = deliveryTrace{origin: d.originOf(r, c), failEv: failEv}
		if err := p.webhook.send(ctx, d.bg, msg); err != nil {
			return refused(reasonDeliveryFailed, fmt.Errorf("%w: webhook: %w", errDelivery, err))
		}
		return nil
	case channelEmail:
		err := p.email.send(ctx, msg)
		d.metrics.delivered("email", err)
		if err != nil {
			return refused(reasonDeliveryFailed, err)
		}
		return nil
	case channelSMS:
		err := p.sms.send(ctx, msg)
		d.metrics.delivered("sms", err)
		switch {
		case errors.Is(err, errNoPhone):
			return refused(reasonDeliveryFailed, err)
		case err != nil:
			return refused(reasonDeliveryFailed, fmt.Errorf("%w: sms: %w", errDelivery, err))
		}
		return nil
	case channelNone, channelBody, channelLocation, channelCookie:
	}
	d.log.Error("secret not sent: not an out-of-band channel", "provider", p.cfg.Name, "channel", int(ch))
	return errServer
}

// webhookGaveUp counts a webhook delivery whose every attempt failed and,
// when that happened after the answer (the retries run in the
// background), records it as the sign-in's failure event with reason
// delivery_failed: the client was told 201, and the secret never arrived.
// A delivery of one attempt failed on the request, which records it.
func (d *Daemon) webhookGaveUp(g webhookGiveUp) {
	d.metrics.delivered("webhook", g.Err)
	if g.Attempts > 1 {
		d.record(g.trace.origin, Event{Event: string(cmp.Or(g.trace.failEv, evVerifyFailed)), Provider: g.Provider, UserID: g.UserID, Reason: reasonDeliveryFailed, cause: g.Err.Error()})
	}
}

// beginOAuth2 starts the redirect flow (Appwrite's createOAuth2Token): it
// checks the success and failure URLs, asks the plugin for the IdP's
// authorize URL, keeps the flow under its OAuth2 state and redirects. A
// refusal is recorded as oauth2.failed. Once the request names an allowed
// failure URL, every refusal (a 429 too) redirects the browser there with
// Appwrite's error parameter, as the callback does, instead of showing a
// JSON page on the API's origin.
func (d *Daemon) beginOAuth2(w http.ResponseWriter, r *http.Request, c *caller) error {
	return d.beginRedirect(w, r, c, browserSignIn)
}

// beginRedirect begins a redirect flow whose callback delivers as in says,
// and sends a refusal to the failure URL once the request names an
// allowed one.
func (d *Daemon) beginRedirect(w http.ResponseWriter, r *http.Request, c *caller, in signIn) error {
	err := d.beginFlow(w, r, c, in)
	if err == nil {
		return nil
	}
	ans := d.signInFailed(r, c, evOAuth2Failed, r.PathValue("name"), "", err)
	failure := r.URL.Query().Get("failure")
	if ae, ok := ans.(*apiError); ok && d.redirectAllowed(failure) {
		failRedirect(w, r, failure, ae)
		return nil
	}
	return ans
}

// failRedirect sends the browser to a flow's failure URL with the error as
// Appwrite puts it there: error={"message","type","code"}.
func failRedirect(w http.ResponseWriter, r *http.Request, failure string, ae *apiError) {
	body, _ := json.Marshal(map[string]any{"message": ae.Message, "type": ae.Type, "code": ae.Status})
	w.Header().Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	http.Redirect(w, r, withQuery(failure, url.Values{"error": {string(body)}}), http.StatusMovedPermanently)
}

func (d *Daemon) beginFlow(w http.ResponseWriter, r *http.Request, c *caller, in signIn) error {
	p, err := d.lookupProvider(r.PathValue("name"))
	if err != nil {
		return err
	}
	if p.channel(in) == channelNone {
		return d.refuseDelivery(p, in)
	}
	if err := d.limit(w, r, "oauth2:"+c.limitIP, d.cfg.Limits.OAuth2, time.Hour); err != nil {
		return err
	}
	q := r.URL.Query()
	f := flow{Provider: p.cfg.Name, Success: q.Get("success"), Failure: q.Get("failure"), Session: in == browserSession}
	if !d.redirectAllowed(f.Success) {
		return errInvalidSuccessURL
	}
	if !d.redirectAllowed(f.Failure) {
		return errInvalidFailureURL
	}
	pr, _ := readParams(r)
	scopes, err := pr.list("scopes")
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := p.plugin.Begin(r.Context(), sdk.BeginRequest{CallbackURL: d.callbackURL(r, p.cfg.Name), Scopes: scopes, RequestID: requestID(r.Context())})
	d.metrics.call(p.cfg.Name, "begin", start, err)
	if err != nil {
		return err
	}
	auth, err := url.Parse(res.AuthURL)
	if err != nil || auth.Query().Get("state") == "" {
		d.log.Error("provider's authorize URL has no state parameter", "provider", p.cfg.Name)
		return refused(reasonAuthorizeNoState, errServer)
	}
	state := auth.Query().Get("state")
	binding := rand.Text()
	browser := sha256.Sum256([]byte(binding))
	f.State, f.Browser = res.State, browser[:]
	raw, _ := json.Marshal(f)
	if err := d.core.KV(flowNamespace).Put(r.Context(), state, raw, flowTTL); err != nil {
		return err
	}
	http.SetCookie(w, d.flowBinding(r, p.cfg.Name, state, binding, int(flowTTL/time.Second)))
	w.Header().Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	w.Header().Set("Pragma", "no-cache")
	http.Redirect(w, r, res.AuthURL, http.StatusMovedPermanently)
	return nil
}

// completeOAuth2 is the IdP's callback: it takes the flow (once), asks the
// plugin for the identity, mints and redirects to the success URL with
// userId and secret, or to the failure URL with error. Every refusal is
// recorded as oauth2.failed with its reason: those before the flow is
// known answer JSON, those after redirect to the flow's failure URL.
func (d *Daemon) completeOAuth2(w http.ResponseWriter, r *http.Request, c *caller) error {
	name := r.PathValue("name")
	early := func(reason string, err error) error {
		return d.signInFailed(r, c, evOAuth2Failed, name, "", refused(reason, err))
	}
	if r.PathValue("project") != d.cfg.Project {
		return early(reasonProjectNotFound, errProjectNotFound)
	}
	p, err := d.lookupProvider(name)
	if err != nil {
		return d.signInFailed(r, c, evOAuth2Failed, name, "", err)
	}
	if err := r.ParseForm(); err != nil {
		return early(reasonBadCallback, errorf(400, "general_argument_invalid", "The callback is not valid form data."))
	}
	state := r.Form.Get("state")
	var f flow
	if state == "" || len(state) > 512 {
		return early(reasonStateMissing, errFlowNotFound)
	}
	raw, err := d.takeFlow(r.Context(), state)
	if errors.Is(err, errFlowNotFound) {
		return early(reasonStateUnknown, err)
	}
	if err != nil {
		return d.signInFailed(r, c, evOAuth2Failed, name, "", err)
	}
	if json.Unmarshal(raw, &f) != nil || f.Provider != p.cfg.Name {
		return early(reasonStateOther, errFlowNotFound)
	}
	http.SetCookie(w, d.flowBinding(r, p.cfg.Name, state, "", -1))
	userID := ""
	fail := func(err error) error {
		ae, _ := d.signInFailed(r, c, evOAuth2Failed, name, userID, err).(*apiError)
		failRedirect(w, r, f.Failure, ae)
		return nil
	}
	if !sameBrowser(r, state, f.Browser) {
		reason := reasonBindingMismatch
		if _, err := r.Cookie(flowCookie(state)); err != nil {
			reason = reasonBindingMissing
		}
		return fail(refused(reason, errFlowOtherBrowser))
	}
	if e := r.Form.Get("error"); e != "" {
		return fail(refused(reasonIdPError, fmt.Errorf("%w: the identity provider answered error=%q", &apiError{401, "user_oauth2_provider_error", "The identity provider refused the sign-in: " + truncate(e, 100)}, truncate(e, 100))))
	}
	in := browserSignIn
	if f.Session {
		in = browserSession
	}
	ch := p.channel(in)
	if ch == channelNone {
		return fail(d.refuseDelivery(p, in))
	}
	start := time.Now()
	id, err := p.plugin.Complete(r.Context(), sdk.CompleteRequest{Query: r.Form, State: f.State, CallbackURL: d.callbackURL(r, p.cfg.Name)})
	d.metrics.call(p.cfg.Name, "complete", start, err)
	if errors.Is(err, sdk.ErrMisconfigured) {
		return fail(refused(reasonIdPInvalidClient, err)) // the browser sees 503 provider_unavailable only
	}
	if err != nil {
		return fail(err)
	}
	user, err := d.resolve(r.Context(), p, id)
	userID = user.ID
	if err != nil {
		return fail(err)
	}
	if ch == channelCookie {
		if err := d.openBrowserSession(w, r, c, p, user, id); err != nil {
			return fail(err)
		}
		redirectBack(w, r, f.Success)
		return nil
	}
	if err := d.smsAllowed(r, ch, user); err != nil {
		return fail(err)
	}
	length, expire := p.linkLength(), p.cfg.Token.Expire
	if length == 0 && ch == channelLocation {
		length = 64 // the secret travels in a URL: make it long, and short-lived
	}
	if expire == 0 && ch == channelLocation {
		expire = tokenstore.MinTokenExpire
	}
	t, secret, err := d.core.Mint(r.Context(), tokenstore.MintRequest{UserID: user.ID, Length: length, Expire: expire, Provider: p.cfg.Name,
		ProviderUID: id.Subject, ProviderTokens: idpTokens(id), IP: c.ip, UserAgent: r.UserAgent()})
	if err != nil {
		return fail(err)
	}
	d.record(d.originOf(r, c), Event{Event: string(evTokenMinted), Provider: p.cfg.Name, UserID: user.ID})
	back := url.Values{"userId": {user.ID}}
	if ch == channelLocation {
		back.Set("secret", secret)
	} else if err := d.sendOutOfBand(r, c, evOAuth2Failed, p, ch, newDelivery(t, secret, p.cfg.Name, user)); err != nil {
		return fail(err) // out of band: the browser learns its user id, the backend or mailbox the secret
	}
	redirectBack(w, r, withQuery(f.Success, back))
	return nil
}

// redirectBack ends a flow's callback: a 301 to the success URL, kept out
// of caches and, since it may carry a secret, out of Referer headers.
func redirectBack(w http.ResponseWriter, r *http.Request, success string) {
	w.Header().Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	w.Header().Set("Pragma", "no-cache")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, success, http.StatusMovedPermanently)
}

// flowBinding is the cookie that binds a flow to its browser (maxAge -1
// deletes it). Over https it is SameSite=None, so that it also comes back
// with an IdP's cross-site form POST to the callback (response_mode
// form_post, as Sign in with Apple answers); the cookie needs no SameSite
// protection, since its value only has to match the flow. Over plain http
// (a local setup) browsers take only Lax, which still covers redirects.
func (d *Daemon) flowBinding(r *http.Request, provider, state, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{Name: flowCookie(state), Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if strings.HasPrefix(d.callbackURL(r, provider), "https://") {
		c.Secure, c.SameSite = true, http.SameSiteNoneMode
	}
	return c
}

// sameBrowser reports whether the request carries the cookie beginOAuth2
// set for state.
func sameBrowser(r *http.Request, state string, want []byte) bool {
	c, err := r.Cookie(flowCookie(state))
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(c.Value))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// takeFlow reads and deletes a flow in one transaction, so a state is good
// for one callback.
func (d *Daemon) takeFlow(ctx context.Context, state string) ([]byte, error) {
	var out []byte
	err := d.core.KV(flowNamespace).Update(ctx, state, 0, func(old []byte) ([]byte, error) {
		out = old
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, errFlowNotFound
	}
	return out, nil
}

// redirectAllowed reports whether a success or failure URL is under
// redirect.allow (config.Redirect.Allows: the same origin, a prefix that
// ends at a path boundary, no dot segments).
func (d *Daemon) redirectAllowed(u string) bool { return d.cfg.Redirect.Allows(u) }

// callbackURL is where the IdP sends the browser back to: under
// public_url, or the listen address; never the request's Host.
func (d *Daemon) callbackURL(_ *http.Request, name string) string {
	return d.baseURL() + "/v1/account/sessions/oauth2/callback/" + url.PathEscape(name) + "/" + url.PathEscape(d.cfg.Project)
}

func withQuery(u string, add url.Values) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := parsed.Query()
	for k, vs := range add {
		q[k] = vs
	}
	parsed.RawQuery = q.Encode()
	return parsed.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// enroll passes an enrollment payload (a password, a template, a TOTP
// request) to the provider's plugin and links the user to the identity it
// reports, so a later verify maps back to this user.
func (d *Daemon) enroll(w http.ResponseWriter, r *http.Request, c *caller) error {
	userID, err := pathID(r, "userId")
	if err != nil {
		return err
	}
	p, err := d.lookupProvider(r.PathValue("name"))
	if err != nil {
		return err
	}
	payload, err := readPayload(r)
	if err != nil {
		return err
	}
	user, err := d.core.GetUser(r.Context(), userID)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := p.plugin.Enroll(r.Context(), sdk.EnrollRequest{UserID: user.ID, Payload: payload})
	d.metrics.call(p.cfg.Name, "enroll", start, err)
	if err != nil {
		return err
	}
	if res.Subject == "" {
		d.log.Error("provider enrolled without a subject", "provider", p.cfg.Name)
		return errServer
	}
	if _, err := d.core.LinkIdentity(r.Context(), tokenstore.Identity{Provider: p.cfg.Name, Subject: res.Subject, UserID: user.ID}); err != nil {
		return err
	}
	data := res.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(http.StatusCreated)
	_, err = w.Write(data)
	return err
}

// kvAdapter gives a plugin its namespace of the store's KV space.
type kvAdapter struct{ kv tokenstore.KV }

func (a kvAdapter) Get(ctx context.Context, key string) ([]byte, error) {
	v, err := a.kv.Get(ctx, key)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, sdk.ErrNotFound
	}
	return v, err
}

func (a kvAdapter) Put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return a.kv.Put(ctx, key, value, ttl)
}

// Update makes CompareAndSwap in plugins atomic across replicas.
func (a kvAdapter) Update(ctx context.Context, key string, ttl time.Duration, change func(old []byte) ([]byte, error)) error {
	return a.kv.Update(ctx, key, ttl, change)
}

func (a kvAdapter) Delete(ctx context.Context, key string) error { return a.kv.Delete(ctx, key) }

// Add makes plugins' counters atomic across replicas. A key that holds no
// counter is the plugin's mistake: a bad request, not a 500.
func (a kvAdapter) Add(ctx context.Context, key string, delta int64, ttl time.Duration) (int64, error) {
	n, err := a.kv.Add(ctx, key, delta, ttl)
	if errors.Is(err, tokenstore.ErrInvalidArgument) {
		return 0, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: err.Error()}
	}
	return n, err
}

func (a kvAdapter) List(ctx context.Context, prefix, after string, limit int) ([]sdk.KVEntry, error) {
	es, err := a.kv.List(ctx, prefix, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]sdk.KVEntry, len(es))
	for i, e := range es {
		out[i] = sdk.KVEntry{Key: e.Key, Value: e.Value}
	}
	return out, nil
}
