// Package bench compares Switchboard's SIP parser with sipgo's. It is a
// separate module so that sipgo never enters Switchboard's go.mod; see
// README.md.
package bench
