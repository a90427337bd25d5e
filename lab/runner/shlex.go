package runner

import (
	"errors"
	"strings"
)

// SplitCommand splits a command line into words the way a POSIX shell does
// for plain words and quotes (and the way containerlab splits cmd and exec):
// blanks separate words, 'single quotes' keep everything, "double quotes"
// keep everything but a backslash before \ " $ or `, and an unquoted
// backslash keeps the next character. There is no expansion, globbing,
// piping or redirection: commands that need them use sh -c '...'.
func SplitCommand(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inW   bool // a word is being built (possibly empty: "")
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inW {
				words = append(words, cur.String())
				cur.Reset()
				inW = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inW = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inW = true
		case c == '\\':
			if i+1 >= len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inW = true
		default:
			cur.WriteByte(c)
			inW = true
		}
	}
	if inW {
		words = append(words, cur.String())
	}
	return words, nil
}
