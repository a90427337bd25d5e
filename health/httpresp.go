package health

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"
)

// What an http check reads from a backend is bounded, so a backend that
// answers with a huge header, endless headers or an endless body costs the
// director a few kilobytes, not its memory (Go's http.ReadResponse keeps
// every header line, however long or many).
const (
	// maxHeaderBytes bounds the status line and header block together:
	// nginx's default is 1 KiB per line in 8 KiB buffers, and a health
	// endpoint's reply is far smaller.
	maxHeaderBytes = 16 << 10
	// maxHeaderLines bounds the number of header lines.
	maxHeaderLines = 100
	// maxLine bounds one line (the bufio.Reader's size): longer is an error.
	maxLine = 4 << 10
	// maxBody bounds how much of a body an ExpectBody check searches.
	maxBody = 64 << 10
)

// errHeaderTooLarge and errTooManyHeaders are the header caps.
var (
	errHeaderTooLarge = fmt.Errorf("response header larger than %d KiB; a health endpoint's reply should be small", maxHeaderBytes>>10)
	errTooManyHeaders = fmt.Errorf("response has more than %d header lines; a health endpoint's reply should be small", maxHeaderLines)
	errLineTooLong    = fmt.Errorf("response header line longer than %d KiB", maxLine>>10)
)

// response is the part of an HTTP/1.x response a check judges.
type response struct {
	status        int
	contentLength int64 // -1 when not given
	chunked       bool
	noBody        bool // HEAD, 1xx, 204 and 304 replies
}

// readResponseHead reads the status line and headers from br, which must
// read through lim; lim.N is the header budget. It keeps no header but the
// two that frame the body.
func readResponseHead(br *bufio.Reader, lim *io.LimitedReader, method string) (response, error) {
	r := response{contentLength: -1}
	line, err := readLine(br, lim)
	if err != nil {
		return r, err
	}
	if r.status, err = parseStatusLine(line); err != nil {
		return r, err
	}
	for n := 0; ; n++ {
		line, err := readLine(br, lim)
		if err != nil {
			return r, err
		}
		if len(line) == 0 {
			break
		}
		if n == maxHeaderLines {
			return r, errTooManyHeaders
		}
		r.header(line)
	}
	r.noBody = method == "HEAD" || r.status < 200 || r.status == 204 || r.status == 304
	return r, nil
}

// readLine returns one line without its CR LF. Running out of the header
// budget, or a line longer than the reader's buffer, is an error.
func readLine(br *bufio.Reader, lim *io.LimitedReader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, errLineTooLong
	case err == io.EOF && lim.N <= 0:
		return nil, errHeaderTooLarge
	case err != nil:
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// parseStatusLine reads the code of "HTTP/1.1 200 OK".
func parseStatusLine(line []byte) (int, error) {
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("malformed status line %.40q", line)
	}
	code, _, _ := bytes.Cut(rest, []byte(" "))
	n, err := strconv.Atoi(string(code))
	if err != nil || len(code) != 3 || n < 100 {
		return 0, fmt.Errorf("malformed status code in %.40q", line)
	}
	return n, nil
}

// header notes Content-Length and Transfer-Encoding: chunked.
func (r *response) header(line []byte) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return
	}
	value = bytes.TrimSpace(value)
	switch {
	case bytes.EqualFold(name, []byte("Content-Length")):
		if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 {
			r.contentLength = n
		}
	case bytes.EqualFold(name, []byte("Transfer-Encoding")):
		r.chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
	}
}

// body returns a reader of the response body, bounded by maxBody.
func (r response) body(br *bufio.Reader) io.Reader {
	switch {
	case r.noBody:
		return bytes.NewReader(nil)
	case r.chunked:
		return io.LimitReader(httputil.NewChunkedReader(br), maxBody)
	case r.contentLength >= 0:
		return io.LimitReader(br, min(r.contentLength, maxBody))
	}
	return io.LimitReader(br, maxBody)
}

// containsStream reports whether want occurs in what r yields. It searches
// as it reads, keeping only the last len(want)-1 bytes between reads, so a
// large body is never held whole.
func containsStream(r io.Reader, want []byte, buf []byte) (bool, error) {
	keep := len(want) - 1
	n := 0 // bytes of buf in use
	for {
		m, err := r.Read(buf[n:])
		n += m
		if bytes.Contains(buf[:n], want) {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if tail := min(keep, n); n == len(buf) || m == 0 {
			n = copy(buf, buf[n-tail:n])
		}
	}
}
