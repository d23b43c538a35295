package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"text/template"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	mail "github.com/wneessen/go-mail"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// delivery is what a deliverer sends: a minted secret and who it is for.
type delivery struct {
	UserID   string `json:"userId"`
	Secret   string `json:"secret"`
	Expire   string `json:"expire"`
	Provider string `json:"provider"`
	Email    string `json:"email"`
	Phone    string `json:"phone"`
}

func newDelivery(t tokenstore.Token, secret, provider string, u tokenstore.User) delivery {
	return delivery{UserID: t.UserID, Secret: secret, Expire: tokenstore.FormatTime(t.Expire), Provider: provider, Email: u.Email, Phone: u.Phone}
}

// webhookSender posts deliveries to an app's backend, signed per Standard
// Webhooks (webhook-id, webhook-timestamp, webhook-signature: v1,<base64>),
// retrying with exponential backoff.
type webhookSender struct {
	url      string
	signer   *standardwebhooks.Webhook
	client   *http.Client
	attempts int
}

func newWebhookSender(c config.Webhook) (*webhookSender, error) {
	signer, err := standardwebhooks.NewWebhook(c.Secret)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	return &webhookSender{url: c.URL, signer: signer, client: &http.Client{Timeout: c.Timeout}, attempts: max(1, c.Attempts)}, nil
}

// send makes the first attempt now and, when it fails, hands the rest to
// the background (bg), so a slow app backend does not hold the client's
// request. The message id stays the same across attempts, so the receiver
// can drop duplicates.
func (w *webhookSender) send(ctx context.Context, bg *background, msg delivery) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	id := "msg_" + tokenstore.NewID()
	err = w.post(ctx, id, body)
	if err == nil || w.attempts == 1 {
		return err
	}
	bg.Go(func(stop <-chan struct{}) {
		backoff := 500 * time.Millisecond
		for i := 1; i < w.attempts; i++ {
			wait := backoff + rand.N(backoff/2)
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
			if w.post(context.Background(), id, body) == nil {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
		}
	})
	return nil
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
		return fmt.Errorf("webhook: %w", err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: status %d", res.StatusCode)
	}
	return nil
}

// emailSender mails deliveries through SMTP.
type emailSender struct {
	cfg  config.Email
	tmpl *template.Template
}

// defaultEmailTemplate is the body when the config gives none.
const defaultEmailTemplate = `Your sign-in code is {{.Secret}}

It expires at {{.Expire}}. If you did not try to sign in, ignore this email.
`

func newEmailSender(c config.Email) (*emailSender, error) {
	text := c.Template
	if text == "" {
		text = defaultEmailTemplate
	}
	tmpl, err := template.New("email").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("email template: %w", err)
	}
	return &emailSender{cfg: c, tmpl: tmpl}, nil
}

var errNoEmail = errorf(400, "user_email_not_found", "The user has no email address to deliver the code to.")

func (e *emailSender) send(ctx context.Context, msg delivery) error {
	if msg.Email == "" {
		return errNoEmail
	}
	var body strings.Builder
	if err := e.tmpl.Execute(&body, msg); err != nil {
		return fmt.Errorf("email template: %w", err)
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
