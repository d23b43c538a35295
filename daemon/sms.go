package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/template"
	"time"

	"github.com/handoffd/handoff/config"
	"github.com/handoffd/handoff/tokenstore"
)

// defaultSMSTemplate is the text when deliver.sms.template is unset.
const defaultSMSTemplate = "Your sign-in code is {{.Secret}}"

// defaultTwilioBaseURL is where Twilio's REST API answers; deliver.sms.base_url
// overrides it (a regional edge, or a test's loopback fake).
const defaultTwilioBaseURL = "https://api.twilio.com"

// smsTimeout bounds one send: the client waits on it.
const smsTimeout = 10 * time.Second

// smsEventType is the type of an http provider's envelope: send this text.
const smsEventType = "sms.send"

// smsSender texts deliveries to the user's phone number, through Twilio's
// Messages API or a signed JSON POST to the app's own SMS gateway. One
// attempt, on the request: the client is told whether the text went.
type smsSender struct {
	cfg    config.SMS
	tmpl   *template.Template
	client *http.Client
	hook   *webhookSender // provider http: the signer and the POST
	log    *slog.Logger
}

func newSMSSender(c config.SMS, log *slog.Logger) (*smsSender, error) {
	text := c.Template
	if text == "" {
		text = defaultSMSTemplate
	}
	tmpl, err := template.New("sms").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("sms template: %w", err)
	}
	s := &smsSender{cfg: c, tmpl: tmpl, log: log, client: &http.Client{
		Timeout:       smsTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	switch c.Provider {
	case config.SMSTwilio:
	case config.SMSHTTP:
		if s.hook, err = newWebhookSender(config.Webhook{URL: c.URL, Secret: c.Secret, Timeout: smsTimeout, Attempts: 1}, log); err != nil {
			return nil, fmt.Errorf("sms secret: %w", err)
		}
	default:
		return nil, fmt.Errorf("sms provider %q: must be twilio or http", c.Provider)
	}
	return s, nil
}

var errNoPhone = errorf(400, "user_phone_not_found", "The user has no valid phone number (E.164, such as +14155550123) to deliver the code to.")

// send texts msg to msg.Phone, which must be E.164. The caller has
// counted the send against the number's limit.
func (s *smsSender) send(ctx context.Context, msg delivery) error {
	if !config.ValidE164(msg.Phone) {
		return errNoPhone
	}
	var body strings.Builder
	if err := s.tmpl.Execute(&body, msg); err != nil {
		return fmt.Errorf("sms template: %w", err)
	}
	if s.cfg.Provider == config.SMSHTTP {
		return s.sendHTTP(ctx, msg, body.String())
	}
	return s.sendTwilio(ctx, msg, body.String())
}

// smsMessage is the data of an http provider's envelope.
type smsMessage struct {
	To       string `json:"to"`
	Body     string `json:"body"`
	UserID   string `json:"userId"`
	Provider string `json:"provider"`
	Expire   string `json:"expire"`
}

// sendHTTP posts {type: sms.send, timestamp, data: {to, body, ...}},
// signed per Standard Webhooks as the webhook delivery is; redirects are
// not followed.
func (s *smsSender) sendHTTP(ctx context.Context, msg delivery, text string) error {
	body, err := json.Marshal(struct {
		Type      string     `json:"type"`
		Timestamp time.Time  `json:"timestamp"`
		Data      smsMessage `json:"data"`
	}{smsEventType, time.Now().UTC(), smsMessage{To: msg.Phone, Body: text, UserID: msg.UserID, Provider: msg.Provider, Expire: msg.Expire}})
	if err != nil {
		return err
	}
	id := "msg_" + tokenstore.NewID()
	if err := s.hook.post(ctx, id, body); err != nil {
		s.log.Warn("sms delivery failed", "sms_provider", "http", "user_id", msg.UserID, "webhook_id", id, "err", err.Error())
		return err
	}
	return nil
}

// twilioError is the JSON body of a Twilio error answer.
type twilioError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

// sendTwilio creates a Message: POST
// {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json with To, Body
// and From or MessagingServiceSid, basic auth account_sid:auth_token. A
// 201 with a sid is sent; an error answer's Twilio code is logged (never
// the body of the text, which holds the secret).
func (s *smsSender) sendTwilio(ctx context.Context, msg delivery, text string) error {
	form := url.Values{"To": {msg.Phone}, "Body": {text}}
	if s.cfg.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", s.cfg.MessagingServiceSID)
	} else {
		form.Set("From", s.cfg.From)
	}
	base := strings.TrimSuffix(s.cfg.BaseURL, "/")
	if base == "" {
		base = defaultTwilioBaseURL
	}
	endpoint := base + "/2010-04-01/Accounts/" + url.PathEscape(s.cfg.AccountSID) + "/Messages.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.SetBasicAuth(s.cfg.AccountSID, s.cfg.AuthToken)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "handoff-sms")
	res, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL names the account
		}
		s.log.Warn("sms delivery failed", "sms_provider", "twilio", "user_id", msg.UserID, "err", err.Error())
		return fmt.Errorf("twilio: %w", err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var ok struct {
		SID string `json:"sid"`
	}
	if res.StatusCode == http.StatusCreated && json.Unmarshal(raw, &ok) == nil && ok.SID != "" {
		return nil
	}
	var te twilioError
	_ = json.Unmarshal(raw, &te)
	s.log.Warn("sms delivery failed: Twilio refused the message", "sms_provider", "twilio", "user_id", msg.UserID,
		"status", res.StatusCode, "twilio_code", te.Code, "more_info", te.MoreInfo)
	return fmt.Errorf("twilio: status %d, code %d", res.StatusCode, te.Code)
}

// smsAllowed is asked before a secret is minted for a text: the user
// must have an E.164 number (400 otherwise, as a user without an email
// address gets), and the number must be under limits.sms_per_number
// texts this hour (429), counted in the store shared by the replicas, so
// nobody can flood one phone with codes from many addresses. Any other
// channel is allowed.
func (d *Daemon) smsAllowed(r *http.Request, ch channel, user tokenstore.User) error {
	if ch != channelSMS {
		return nil
	}
	if !config.ValidE164(user.Phone) {
		return errNoPhone
	}
	if !d.cfg.Limits.Enabled {
		return nil
	}
	count, _, err := d.limits.hit(r.Context(), "sms:"+user.Phone, time.Hour, time.Now())
	if err != nil {
		return err
	}
	if count > d.cfg.Limits.SMSPerNumber {
		d.metrics.limited.WithLabelValues(r.Pattern).Inc()
		return errRateLimit
	}
	return nil
}

// linkLength is the length of the provider's secrets: token.length, or
// for a magic-URL mail (deliver.email.link) without one 64, since the
// secret travels in a URL and is never typed, as in the redirect flow.
// Zero means tokens.length.
func (p *provider) linkLength() int {
	if p.cfg.Token.Length == 0 && p.cfg.Deliver.Via == config.DeliverEmail && p.cfg.Deliver.Email.Link != "" {
		return linkTokenLength
	}
	return p.cfg.Token.Length
}

// linkTokenLength is the length of a magic URL's secret.
const linkTokenLength = 64
