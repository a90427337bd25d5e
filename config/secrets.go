package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// maxSecretFileSize bounds what a password_file may hold: an MD5 key is at
// most 80 bytes; anything much larger is the wrong file.
const maxSecretFileSize = 4096

// password resolves a peer's MD5 password from exactly one of password,
// password_file and password_env. The secret itself never appears in an error
// message: errors name the key, the file or the variable, and the length.
func (v *validator) password(rp *rawPeer, path string) (secret, from string) {
	set := 0
	for _, p := range []*string{rp.Password, rp.PasswordFile, rp.PasswordEnv} {
		if p != nil {
			set++
		}
	}
	if set > 1 {
		v.errf(path+".password", "password, password_file and password_env are alternatives; %d are set", set).
			hintf("keep password_file (or password_env) and remove the others")
		return "", ""
	}
	key := path + ".password"
	switch {
	case rp.Password != nil:
		secret, from = *rp.Password, "inline"
	case rp.PasswordFile != nil:
		key = path + ".password_file"
		secret, from = v.passwordFile(*rp.PasswordFile, key), "file "+*rp.PasswordFile
	case rp.PasswordEnv != nil:
		key = path + ".password_env"
		secret, from = v.passwordEnv(*rp.PasswordEnv, key), "environment "+*rp.PasswordEnv
	default:
		return "", ""
	}
	if len(secret) > maxMD5KeyLen {
		v.errf(key, "the MD5 password is %d bytes, longer than the kernel's %d", len(secret), maxMD5KeyLen)
		return "", ""
	}
	return secret, from
}

// passwordFile reads a secret from a file that only its owner may read. One
// trailing newline (as `echo secret > file` writes) is dropped.
func (v *validator) passwordFile(name, key string) string {
	if !strings.HasPrefix(name, "/") {
		v.errf(key, "%q is not an absolute path", name).hintf("for example /etc/directord/bgp-peer1.key")
		return ""
	}
	f, err := os.Open(name)
	if err != nil {
		e := v.errf(key, "cannot read the password file: %v", err)
		if errors.Is(err, fs.ErrPermission) {
			e.hintf("the file must be readable by the user directord runs as: chown directord %s", name)
		}
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		v.errf(key, "stat the password file: %v", err)
		return ""
	}
	if !st.Mode().IsRegular() {
		v.errf(key, "%s is not a regular file", name)
		return ""
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		v.errf(key, "%s is accessible by group or others (mode %04o); refusing to use a secret others can read", name, perm).
			hintf("chmod 600 %s (owned by the user directord runs as)", name)
		return ""
	}
	buf := make([]byte, maxSecretFileSize+1)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		v.errf(key, "%s is empty", name).hintf("write the MD5 key into it, or remove password_file")
		return ""
	}
	if n > maxSecretFileSize {
		v.errf(key, "%s is larger than %d bytes; is this the right file?", name, maxSecretFileSize)
		return ""
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(buf[:n]), "\n"), "\r")
	if secret == "" {
		v.errf(key, "%s holds an empty password", name).hintf("write the MD5 key into it, or remove password_file")
	}
	return secret
}

// passwordEnv reads a secret from an environment variable of the daemon (for
// example set by systemd's EnvironmentFile= or LoadCredential= wrapper).
func (v *validator) passwordEnv(name, key string) string {
	if name == "" || strings.ContainsAny(name, "= \t\n\x00") {
		v.errf(key, "%q is not an environment variable name", name).hintf("for example DIRECTORD_BGP_PASSWORD")
		return ""
	}
	secret, ok := os.LookupEnv(name)
	if !ok || secret == "" {
		v.errf(key, "the environment variable %s is not set or empty", name).
			hintf("set it for directord, e.g. Environment= or EnvironmentFile= in a drop-in of directord.service")
		return ""
	}
	return secret
}

// String keeps fmt from ever printing the secret: a Peer printed with %v or
// %+v (a log line, a panic) shows where the password came from instead.
func (p Peer) String() string {
	pw := ""
	if p.Password != "" {
		pw = " password <redacted, " + p.PasswordFrom + ">"
	}
	return fmt.Sprintf("peer %s asn %d%s", p.Address, p.ASN, pw)
}
