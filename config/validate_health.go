package config

import (
	"slices"
	"strings"
	"time"
)

// Limits of health check settings.
const (
	// minCheckInterval keeps a typo ("2ms" for "2s") from turning the checker
	// into a flood.
	minCheckInterval = 10 * time.Millisecond
	// minCheckTimeout is the shortest probe deadline that can succeed at all.
	minCheckTimeout = time.Millisecond
	// maxCheckInterval: with the default fall of 3, a dead backend is noticed
	// after three intervals; longer than an hour is a unit typo.
	maxCheckInterval = time.Hour
	// maxRiseFall bounds the dampening counters to something a human meant.
	maxRiseFall = 100
)

// checkTypes returns the health check kinds in documentation order.
func checkTypes() []string {
	return []string{string(CheckTCP), string(CheckHTTP), string(CheckHTTPS), string(CheckUDP), string(CheckDNS), string(CheckExec)}
}

// dnsQueryTypes returns the DNS question types a dns check may ask.
func dnsQueryTypes() []string {
	return []string{"A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA"}
}

// dnsRCodes returns the answer codes a dns check may expect.
func dnsRCodes() []string {
	return []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"}
}

// check validates a service's health check; nil means a default TCP check.
func (v *validator) check(r *rawCheck, path string) Check {
	if r == nil {
		r = &rawCheck{}
	}
	c := Check{}
	typ, typeOK := v.enum(r.Type, v.join(path, ".type"), "health check type", string(DefaultCheckType), checkTypes())
	c.Type = CheckType(typ)
	interval, iok := v.durationAtMost(r.Interval, v.join(path, ".interval"), DefaultCheckInterval, maxCheckInterval,
		"a dead backend is noticed only after fall x interval; 1s or 2s is usual")
	if iok && interval < minCheckInterval {
		v.errf(v.join(path, ".interval"), "%s is shorter than %s", interval, minCheckInterval).
			hintf("probes that often would flood the backends; 1s or 2s is usual")
		interval, iok = DefaultCheckInterval, false
	}
	c.Interval = interval
	timeout, tok := v.duration(r.Timeout, v.join(path, ".timeout"), defaultCheckTimeout(interval))
	switch {
	case !tok:
	case timeout < minCheckTimeout:
		v.errf(v.join(path, ".timeout"), "%s is shorter than %s", timeout, minCheckTimeout)
	case iok && timeout >= interval:
		e := v.errf(v.join(path, ".timeout"), "timeout %s is not shorter than the interval %s", timeout, interval)
		if r.Timeout == nil {
			e.hintf("the default timeout is %s; set a timeout below the interval", timeout)
		} else {
			e.hintf("a probe must finish before the next one starts; try %s", defaultCheckTimeout(interval))
		}
	}
	c.Timeout = timeout
	rise, _ := v.integer(r.Rise, v.join(path, ".rise"), DefaultRise, 1, maxRiseFall)
	fall, _ := v.integer(r.Fall, v.join(path, ".fall"), DefaultFall, 1, maxRiseFall)
	c.Rise, c.Fall = int(rise), int(fall)
	port, _ := v.integer(r.Port, v.join(path, ".port"), 0, 0, 65535)
	c.Port = uint16(port)
	if r.Source != nil {
		c.Source, _ = v.addr(r.Source, v.join(path, ".source"))
	}
	c.TLSVerify = DefaultTLSVerify
	if r.ForwardingCheck != nil {
		c.ForwardingCheck = *r.ForwardingCheck
	}
	if !typeOK {
		// The type-specific rules below would only add noise.
		return c
	}
	v.checkFieldsFit(r, path, c.Type)
	switch c.Type {
	case CheckHTTP, CheckHTTPS:
		v.httpCheck(r, path, &c)
	case CheckUDP:
		c.Payload = v.str(r.Payload, "")
		c.Expect = v.str(r.Expect, "")
		if c.Payload == "" {
			v.missing(v.join(path, ".payload"), "required for a udp check: the datagram to send").
				hintf("a UDP service answers only when asked; set the request it understands")
		}
	case CheckDNS:
		v.dnsCheck(r, path, &c)
	case CheckExec:
		for i, a := range r.Command {
			if a == nil {
				v.missing(indexPath(v.join(path, ".command"), i), "empty argument").hintf(`write "" for an empty argument`)
				continue
			}
			c.Command = append(c.Command, *a)
		}
		switch {
		case len(r.Command) == 0:
			v.missing(v.join(path, ".command"), "required for an exec check: the program and its arguments").
				hintf(`a list, e.g. ["/usr/local/bin/check-db", "--quick"]`)
		case len(c.Command) > 0 && c.Command[0] == "" && r.Command[0] != nil:
			v.errf(indexPath(v.join(path, ".command"), 0), "the program name is empty")
		}
	}
	return c
}

// checkFieldsFit rejects keys that the check type does not use: a path on a
// tcp check usually means the type is wrong, not that the path is unwanted.
func (v *validator) checkFieldsFit(r *rawCheck, path string, t CheckType) {
	// types are arrays, not slices: built for every service, slices
	// were a tenth of validation's allocations.
	http := [2]CheckType{CheckHTTP, CheckHTTPS}
	only := func(t CheckType) [2]CheckType { return [2]CheckType{t} }
	fields := [...]struct {
		key   string
		set   bool
		types [2]CheckType // "" pads
	}{
		{"method", r.Method != nil, http},
		{"path", r.Path != nil, http},
		{"host", r.Host != nil, http},
		{"expect_status", r.ExpectStatus != nil, http},
		{"expect_body", r.ExpectBody != nil, http},
		{"tls_server_name", r.TLSServerName != nil, only(CheckHTTPS)},
		{"tls_verify", r.TLSVerify != nil, only(CheckHTTPS)},
		{"payload", r.Payload != nil, only(CheckUDP)},
		{"expect", r.Expect != nil, only(CheckUDP)},
		{"query", r.Query != nil, only(CheckDNS)},
		{"query_type", r.QueryType != nil, only(CheckDNS)},
		{"rcode", r.RCode != nil, only(CheckDNS)},
		{"command", r.Command != nil, only(CheckExec)},
	}
	for _, f := range fields {
		if !f.set || slices.Contains(f.types[:], t) {
			continue
		}
		var names []string
		for _, ft := range f.types {
			if ft != "" {
				names = append(names, string(ft))
			}
		}
		v.errf(path+"."+f.key, "not used by %s checks", t).
			hintf("%s belongs to %s checks; check the type, or remove the key", f.key, strings.Join(names, " and "))
	}
}

func (v *validator) httpCheck(r *rawCheck, path string, c *Check) {
	c.Method = v.str(r.Method, DefaultHTTPMethod)
	if !isHTTPToken(c.Method) {
		v.errf(v.join(path, ".method"), "%q is not an HTTP method", c.Method).hintf("for example GET or HEAD")
	}
	c.Path = v.str(r.Path, DefaultHTTPPath)
	switch {
	case !strings.HasPrefix(c.Path, "/"):
		v.errf(v.join(path, ".path"), "%q does not start with /", c.Path).hintf("write the request path, e.g. /healthz")
	case strings.ContainsAny(c.Path, " \t\r\n"):
		v.errf(v.join(path, ".path"), "%q contains white space", c.Path).hintf("percent-encode it (%%20)")
	}
	c.Host = v.str(r.Host, "")
	if strings.ContainsAny(c.Host, " \t\r\n/") {
		v.errf(v.join(path, ".host"), "%q is not a host name", c.Host)
	}
	if r.ExpectStatus == nil {
		c.ExpectStatus = defaultExpectStatus()
	} else if len(r.ExpectStatus) == 0 {
		v.errf(v.join(path, ".expect_status"), "no status code").hintf("list the accepted codes, e.g. [200, 204], or remove the key for 200")
	}
	for i, st := range r.ExpectStatus {
		sp := indexPath(v.join(path, ".expect_status"), i)
		if st == nil {
			v.missing(sp, "empty status code")
			continue
		}
		if *st < 100 || *st > 599 {
			v.errf(sp, "%d is not an HTTP status code (100..599)", *st)
			continue
		}
		c.ExpectStatus = append(c.ExpectStatus, int(*st))
	}
	c.ExpectBody = v.str(r.ExpectBody, "")
	if c.Type == CheckHTTPS {
		c.TLSServerName = v.str(r.TLSServerName, "")
		if r.TLSVerify != nil {
			c.TLSVerify = *r.TLSVerify
		}
	}
}

// isHTTPToken reports whether s is an HTTP method token.
func isHTTPToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (v *validator) dnsCheck(r *rawCheck, path string, c *Check) {
	c.Query = v.str(r.Query, "")
	switch {
	case c.Query == "":
		v.missing(v.join(path, ".query"), "required for a dns check: the name to ask for").hintf("for example query: example.com")
	case !isDomainName(c.Query):
		v.errf(v.join(path, ".query"), "%q is not a domain name", c.Query)
	}
	upper := func(p *string) *string {
		if p == nil {
			return nil
		}
		u := strings.ToUpper(*p)
		return &u
	}
	c.QueryType, _ = v.enum(upper(r.QueryType), v.join(path, ".query_type"), "DNS query type", DefaultDNSQueryType, dnsQueryTypes())
	c.RCode, _ = v.enum(upper(r.RCode), v.join(path, ".rcode"), "DNS rcode", DefaultDNSRCode, dnsRCodes())
}

// isDomainName reports whether s is a plausible DNS name (labels of 1 to 63
// letters, digits, '-' or '_', 253 bytes in all, optional final dot).
func isDomainName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
