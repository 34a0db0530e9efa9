package config

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// lines maps key paths to the line they are written on. A path names an
// element of an array of tables by its index: "trunk#1.host" is the host of
// the second [[trunk]], "trunk#1" its header, "trunk#1.did.+1555" one of its
// DIDs.
type lines map[string]int

// arrayTables are the top-level keys that hold arrays of tables.
var arrayTables = map[string]bool{"account": true, "trunk": true, "route": true}

// locate reads the file's key positions. Errors are ignored: the decoder
// reports them, and a file that does not parse is never validated.
func locate(data []byte) lines {
	m := make(lines)
	var p unstable.Parser
	p.Reset(data)
	count := make(map[string]int) // elements of each top-level array table
	table := ""                   // path of the current table
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.ArrayTable, unstable.Table:
			keys, off := keyPath(e)
			if len(keys) == 0 {
				continue
			}
			switch {
			case len(keys) == 1 && (e.Kind == unstable.ArrayTable || arrayTables[keys[0]]):
				// [trunk] decodes as a one-element [[trunk]].
				table = keys[0] + "#" + strconv.Itoa(count[keys[0]])
				count[keys[0]]++
			case count[keys[0]] > 0:
				// [trunk.did] belongs to the last [[trunk]].
				table = keys[0] + "#" + strconv.Itoa(count[keys[0]]-1) + "." + strings.Join(keys[1:], ".")
			default:
				table = strings.Join(keys, ".")
			}
			m.set(table, lineAt(data, off))
		case unstable.KeyValue:
			keys, off := keyPath(e)
			if len(keys) == 0 {
				continue
			}
			path := strings.Join(keys, ".")
			if table != "" {
				path = table + "." + path
			}
			m.set(path, lineAt(data, off))
		}
	}
	return m
}

// keyPath returns the key of a table header or key/value, and the offset
// of its first part.
func keyPath(e *unstable.Node) ([]string, uint32) {
	var keys []string
	var off uint32
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if len(keys) == 0 {
			off = n.Raw.Offset
		}
		keys = append(keys, string(n.Data))
	}
	return keys, off
}

func (m lines) set(path string, line int) {
	if _, ok := m[path]; !ok {
		m[path] = line
	}
}

// at returns the line of path, or of its closest enclosing table that has
// one ("trunk" for "trunk#0" written as an inline array), or 0.
func (m lines) at(path string) int {
	for path != "" {
		if l, ok := m[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".#")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// lineAt returns the 1-based line of byte offset off.
func lineAt(data []byte, off uint32) int {
	if int(off) > len(data) {
		return 0
	}
	return bytes.Count(data[:off], []byte{'\n'}) + 1
}
