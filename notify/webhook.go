package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/anycast-director/director/config"
)

// Webhook headers (docs/console.md).
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256 of
	// t + "." + body>" keyed by the webhook's secret.
	SignatureHeader = "X-Director-Signature"
	// DeliveryHeader is a random id per message, the same on every retry.
	DeliveryHeader = "X-Director-Delivery"
)

// webhook posts messages as JSON.
type webhook struct {
	url    string
	secret []byte
	client *http.Client
}

func newWebhook(w config.Webhook) (*webhook, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if w.CAFile != "" {
		pool, err := loadPool(w.CAFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// Every attempt has its own deadline; no idle connection outlives a
	// message by much.
	tr.IdleConnTimeout = 30 * time.Second
	return &webhook{url: w.URL, secret: []byte(w.Secret), client: &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (w *webhook) name() string { return "webhook " + w.url }

// send posts m; 2xx is success, 408, 429 and 5xx are retried, any other
// answer is permanent.
func (w *webhook) send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return permanentError{err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "directord-notify/1")
	req.Header.Set(DeliveryHeader, deliveryID(m))
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, time.Now(), body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", w.url, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("post to %s: %s: %s", w.url, resp.Status, bytes.TrimSpace(snippet))
	default:
		return permanentError{fmt.Errorf("post to %s: %s: %s (not retried: fix the receiver or the url)", w.url, resp.Status, bytes.TrimSpace(snippet))}
	}
}

// Sign computes the signature header value for body at time t: receivers
// recompute HMAC-SHA256(secret, "<t>.<body>") and compare, and refuse old
// timestamps to stop replays.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// deliveryID identifies a message across retries: derived from its first
// change and sender, plus randomness when there are none.
func deliveryID(m Message) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d", m.Director, m.Since.UnixNano())
	if len(m.Entries) > 0 {
		fmt.Fprintf(h, "|%s|%s", m.Entries[0].Kind, m.Entries[0].Subject)
	} else {
		var r [8]byte
		rand.Read(r[:])
		h.Write(r[:])
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// loadPool reads a PEM CA bundle.
func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", file)
	}
	return pool, nil
}
