package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	mail "github.com/wneessen/go-mail"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// signIn is the way a sign-in reached the daemon.
type signIn int

const (
	// directSignIn is POST /v1/providers/{name}/verify: the answer is JSON
	// to whoever called, who may be anyone.
	directSignIn signIn = iota
	// browserSignIn is the OAuth2 redirect flow's callback: the answer
	// redirects the browser that began the flow to its success URL.
	browserSignIn
	// browserSession is the same callback in a flow begun by
	// createOAuth2Session: the daemon opens the session itself and sets
	// it in the browser's cookies, a delivery as in band as the body.
	browserSession
)

// channel is where a minted secret goes.
type channel int

const (
	channelNone     channel = iota // nowhere: the sign-in is refused before anything is minted
	channelBody                    // the verify answer's body (Appwrite's Token model)
	channelLocation                // the success URL in the redirect flow's Location
	channelWebhook                 // a signed POST to the app's backend
	channelEmail                   // a mail to the user's address
	channelSMS                     // a text to the user's phone number
	channelCookie                  // no secret: a session, in the session cookies of the callback's answer
)

// secretChannel is the allow-list of where a minted secret may go, and
// the one place that decides it. A verifier that does not prove identity
// (a captcha) delivers only out of band, so that the receiver of the
// secret is the proof. A direct verify answers with the secret only in
// mode response; redirect mode serves only the browser redirect flow,
// where response also means the redirect, the answer of that flow. A
// session set in the browser's cookies (createOAuth2Session) is in band
// too: only a verifier that proves identity, in mode response or
// redirect, may open one; a provider that delivers out of band never
// does, or the browser would skip the channel the operator chose. Every
// other combination, and a mode this switch does not know, is channelNone.
func secretChannel(in signIn, mode config.DeliveryMode, provesIdentity bool) channel {
	switch mode {
	case config.DeliverWebhook:
		if in != browserSession {
			return channelWebhook
		}
	case config.DeliverEmail:
		if in != browserSession {
			return channelEmail
		}
	case config.DeliverSMS:
		if in != browserSession {
			return channelSMS
		}
	case config.DeliverResponse, "": // unset deliver.via means response
		switch {
		case !provesIdentity:
			return channelNone
		case in == directSignIn:
			return channelBody
		case in == browserSignIn:
			return channelLocation
		case in == browserSession:
			return channelCookie
		}
	case config.DeliverRedirect:
		switch {
		case provesIdentity && in == browserSignIn:
			return channelLocation
		case provesIdentity && in == browserSession:
			return channelCookie
		}
	}
	return channelNone
}

// deliveryRefused is why a sign-in whose secret may go nowhere is
// refused. A verifier that does not prove identity got here only if it
// changed its Describe after start; the provider is then unavailable.
func deliveryRefused(in signIn, provesIdentity bool) *apiError {
	switch {
	case !provesIdentity:
		return errUnavailable
	case in == browserSession:
		return errOutOfBandOnly
	}
	return errRedirectOnly
}

// delivery is what a deliverer sends: a minted secret and who it is for.
// Email and Phone are the user's stored ones (an identity's reach the
// user when the store creates it from that identity), never what this
// sign-in reported: out of band, whoever receives the secret is the
// proof, so the request must not choose where it goes.
type delivery struct {
	UserID   string `json:"userId"`
	Secret   string `json:"secret"`
	Expire   string `json:"expire"`
	Provider string `json:"provider"`
	Email    string `json:"email"`
	Phone    string `json:"phone"`

	trace deliveryTrace // not sent (unexported)
}

// deliveryTrace is where a delivery came from, for the events of a
// delivery that fails after the answer.
type deliveryTrace struct {
	origin origin
	failEv eventName // the sign-in's failure event: verify.failed or oauth2.failed
}

func newDelivery(t tokenstore.Token, secret, provider string, u tokenstore.User) delivery {
	return delivery{UserID: t.UserID, Secret: secret, Expire: tokenstore.FormatTime(t.Expire), Provider: provider, Email: u.Email, Phone: u.Phone}
}

// webhookEventType is the type of every delivery's envelope: a one-time
// secret was minted for data.userId, and here it is. It is the audit
// log's event name for the same moment.
const webhookEventType = "token.minted"

// webhookEnvelope is the body of a webhook delivery: the Standard
// Webhooks payload structure, {type, timestamp, data}, with the delivery
// as data. The timestamp is when the secret was minted and stays the same
// across attempts, as does the whole body (and the webhook-id).
type webhookEnvelope struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      delivery  `json:"data"`
}

// webhookGiveUp is what is known of a delivery whose every attempt
// failed: never the secret.
type webhookGiveUp struct {
	Provider  string // the provider whose sign-in minted the secret
	UserID    string
	WebhookID string // the webhook-id of every attempt
	Attempts  int
	Status    int   // the last attempt's HTTP status; 0 when it got no answer
	Err       error // the last attempt's error

	trace deliveryTrace
}

// webhookSender posts deliveries to an app's backend, signed per Standard
// Webhooks (webhook-id, webhook-timestamp, webhook-signature: v1,<base64>),
// retrying with exponential backoff.
type webhookSender struct {
	url      string
	signer   *standardwebhooks.Webhook
	client   *http.Client
	attempts int
	log      *slog.Logger
	// onGiveUp, when set, is called once for a delivery whose every
	// attempt failed, after the ERROR line is logged: the place for the
	// delivery metric and the audit event. It may run on the request's
	// goroutine (attempts: 1) or in the background.
	onGiveUp func(webhookGiveUp)
	// onDelivered, when set, is called once for a delivery an attempt
	// made.
	onDelivered func()
}

// newWebhookSender builds a sender whose client never follows a redirect:
// a 3xx would re-post the signed secret wherever it points, so it counts
// as a failed attempt instead.
func newWebhookSender(c config.Webhook, log *slog.Logger) (*webhookSender, error) {
	signer, err := standardwebhooks.NewWebhook(c.Secret)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	client := &http.Client{
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &webhookSender{url: c.URL, signer: signer, client: client, attempts: max(1, c.Attempts), log: log}, nil
}

// send makes the first attempt now and, when it fails, hands the rest to
// the background (bg), so a slow app backend does not hold the client's
// request. The message id stays the same across attempts, so the receiver
// can drop duplicates. A delivery whose last attempt fails, or whose
// retries a shutdown cuts short, is given up (giveUp): after the first
// attempt the client was answered 201, so that ERROR line is the only
// trace of the lost secret.
func (w *webhookSender) send(ctx context.Context, bg *background, msg delivery) error {
	body, err := json.Marshal(webhookEnvelope{Type: webhookEventType, Timestamp: time.Now().UTC(), Data: msg})
	if err != nil {
		return err
	}
	id := "msg_" + tokenstore.NewID()
	err = w.attempt(ctx, id, body, 1)
	if err == nil {
		w.delivered()
		return nil
	}
	if w.attempts == 1 {
		w.giveUp(msg, id, err)
		return err
	}
	bg.Go(func(stop <-chan struct{}) {
		backoff := 500 * time.Millisecond
		for i := 2; i <= w.attempts; i++ {
			wait := backoff + rand.N(backoff/2)
			select {
			case <-stop: // the daemon stops: the attempts left are lost too
				w.giveUp(msg, id, fmt.Errorf("%w (the daemon stopped before attempt %d)", err, i))
				return
			case <-time.After(wait):
			}
			if err = w.attempt(context.Background(), id, body, i); err == nil {
				w.delivered()
				return
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		w.giveUp(msg, id, err)
	})
	return nil
}

func (w *webhookSender) delivered() {
	if w.onDelivered != nil {
		w.onDelivered()
	}
}

// giveUp reports a delivery whose every attempt failed: one ERROR line
// with the provider, user, webhook id and the last status or error (the
// secret is gone: the user must sign in again), then onGiveUp.
func (w *webhookSender) giveUp(msg delivery, id string, err error) {
	g := webhookGiveUp{Provider: msg.Provider, UserID: msg.UserID, WebhookID: id, Attempts: w.attempts, Err: err, trace: msg.trace}
	var se *webhookStatusError
	if errors.As(err, &se) {
		g.Status = se.status
	}
	w.log.Error("webhook delivery given up: the secret never reached the app's backend; the user must sign in again",
		"user_id", g.UserID, "webhook_id", id, "attempts", g.Attempts, "last_status", g.Status, "err", err.Error())
	if w.onGiveUp != nil {
		w.onGiveUp(g)
	}
}

// attempt posts once and logs a failure with its status or transport
// error: the message id, never the body, which holds the secret.
func (w *webhookSender) attempt(ctx context.Context, id string, body []byte, n int) error {
	err := w.post(ctx, id, body)
	if err != nil {
		w.log.Warn("webhook attempt failed", "attempt", n, "attempts", w.attempts, "webhook_id", id, "err", err.Error())
	}
	return err
}

// webhookStatusError is an attempt the app's backend answered with a
// status other than 2xx.
type webhookStatusError struct{ status int }

func (e *webhookStatusError) Error() string {
	if e.status/100 == 3 {
		return fmt.Sprintf("webhook: status %d: redirects are not followed", e.status)
	}
	return fmt.Sprintf("webhook: status %d", e.status)
}

func (w *webhookSender) post(ctx context.Context, id string, body []byte) error {
	now := time.Now()
	sig, err := w.signer.Sign(id, now, body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "handoff-webhook")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("webhook-signature", sig)
	res, err := w.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may hold a token of the app's; the config has it
		}
		return fmt.Errorf("webhook: %w", err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return &webhookStatusError{res.StatusCode}
	}
	return nil
}

// emailSender mails deliveries through SMTP: a code, or with a link a
// magic URL, as a text part and, unless only a text template is set, an
// HTML part (multipart/alternative).
type emailSender struct {
	cfg  config.Email
	text *template.Template
	html *htmltemplate.Template // nil: text only
}

// defaultEmailTemplate is the text part when the config gives none.
const defaultEmailTemplate = `{{if .Link}}Open this link to sign in:

{{.Link}}
{{else}}Your sign-in code is {{.Secret}}
{{end}}
It expires at {{.Expire}}. If you did not try to sign in, ignore this email.
`

// defaultEmailHTML is the HTML part when the config gives neither
// template. html/template escapes every field for where it stands.
const defaultEmailHTML = `<!doctype html>
<html><body style="font-family: sans-serif">
{{if .Link}}<p><a href="{{.Link}}">Sign in</a></p>
<p>Or open this link: {{.Link}}</p>
{{else}}<p>Your sign-in code is <strong>{{.Secret}}</strong></p>
{{end}}<p>It expires at {{.Expire}}. If you did not try to sign in, ignore this email.</p>
</body></html>
`

// emailData is what the templates see: the delivery and, for a magic
// URL, the link that carries it.
type emailData struct {
	delivery
	Link string
}

func newEmailSender(c config.Email) (*emailSender, error) {
	text, html := c.Template, c.HTMLTemplate
	if text == "" && html == "" {
		html = defaultEmailHTML
	}
	if text == "" {
		text = defaultEmailTemplate
	}
	e := &emailSender{cfg: c}
	var err error
	if e.text, err = template.New("email").Option("missingkey=error").Parse(text); err != nil {
		return nil, fmt.Errorf("email template: %w", err)
	}
	if html != "" {
		if e.html, err = htmltemplate.New("email").Option("missingkey=error").Parse(html); err != nil {
			return nil, fmt.Errorf("email html_template: %w", err)
		}
	}
	return e, nil
}

var errNoEmail = errorf(400, "user_email_not_found", "The user has no email address to deliver the code to.")

// magicLink is the mail's link: deliver.email.link with userId and
// secret set in its query (a value of the same name there replaced).
func magicLink(link string, msg delivery) string {
	return withQuery(link, url.Values{"userId": {msg.UserID}, "secret": {msg.Secret}})
}

func (e *emailSender) send(ctx context.Context, msg delivery) error {
	if msg.Email == "" {
		return errNoEmail
	}
	data := emailData{delivery: msg}
	if e.cfg.Link != "" {
		data.Link = magicLink(e.cfg.Link, msg)
	}
	var body, html strings.Builder
	if err := e.text.Execute(&body, data); err != nil {
		return fmt.Errorf("email template: %w", err)
	}
	if e.html != nil {
		if err := e.html.Execute(&html, data); err != nil {
			return fmt.Errorf("email html_template: %w", err)
		}
	}
	m := mail.NewMsg()
	if err := m.From(e.cfg.From); err != nil {
		return fmt.Errorf("email from: %w", err)
	}
	if err := m.To(msg.Email); err != nil {
		return errorf(400, "general_argument_invalid", "The user's email address cannot receive mail.")
	}
	m.Subject(e.cfg.Subject)
	m.SetBodyString(mail.TypeTextPlain, body.String())
	if e.html != nil {
		m.AddAlternativeString(mail.TypeTextHTML, html.String())
	}
	host, port, err := splitHostPort(e.cfg.SMTP)
	if err != nil {
		return err
	}
	opts := []mail.Option{mail.WithPort(port), mail.WithTimeout(10 * time.Second)}
	switch e.cfg.TLS {
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case "tls":
		opts = append(opts, mail.WithSSL())
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if e.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(e.cfg.Username), mail.WithPassword(e.cfg.Password))
	}
	client, err := mail.NewClient(host, opts...)
	if err != nil {
		return fmt.Errorf("email client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("email: %w", errors.Join(errUnavailableSMTP, err))
	}
	return nil
}

var errUnavailableSMTP = errors.New("smtp server unavailable")
