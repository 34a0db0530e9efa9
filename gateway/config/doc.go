// Package config reads the gateway's configuration file: the accounts it
// authenticates, the SIP trunks it connects to, the outbound dial routes
// and the options of the domain it serves. Settings of the process itself
// (listeners, data directory, ...) come from the environment and are not
// here; SWITCHBOARD_CONFIG names this file.
//
// The file is TOML. example.toml beside this file documents every key and
// is parsed by the tests, so it stays valid. In short:
//
//	[domain]                 # optional
//	name = "example.com"     # the SIP domain and digest realm
//	redirect = false         # answer 302 instead of proxying
//
//	[[account]]              # one per user
//	user = "alice"
//	ha1_md5 = "..."          # or: password = "..."
//	ha1_sha256 = "..."
//
//	[[trunk]]                # one per provider or PBX
//	name = "voipco"
//	host = "sip.voipco.example"
//	...
//	[trunk.did]              # inbound numbers of that trunk
//	"+15551230001" = "alice"
//
//	[[route]]                # outbound dial rules, first match wins
//	pattern = '9(\d+)'
//	strip = 1
//	trunk = "voipco"
//
// # Loading
//
// [Load] and [Parse] decode the file strictly: an unknown key is an error
// (with a suggestion when it looks like a typo of a known one), as is a
// value of the wrong type. The content is then validated as a whole, and
// every problem found is reported at once in an [*Error], each with the
// line it concerns when that is known, so an operator fixes them all in one
// pass. Errors wrap [ErrInvalid].
//
// Plain passwords of accounts are accepted for convenience but are hashed
// into digest HA1 values (RFC 7616) as the file is loaded, for the realm
// the domain name gives, and never kept: [Account] has no password field.
// Writing ha1_md5 and ha1_sha256 in the file is better, as the file then
// holds nothing that works outside this realm. Trunk passwords are
// different: they answer the provider's challenges, so [Trunk] keeps them,
// and its LogValue hides them.
//
// # Parser
//
// The TOML parser is github.com/pelletier/go-toml/v2, chosen over
// github.com/BurntSushi/toml (the other well-kept one) because its strict
// mode reports every unknown key with its line and column and an excerpt
// of the file, where BurntSushi's Undecoded gives the key path alone —
// without even the index of the [[trunk]] it sits in. Its type errors
// carry positions too. Both are pure Go, follow TOML 1.0 and are
// maintained. The lines of semantic problems (a route naming an unknown
// trunk, say) come from go-toml's unstable AST parser, used only to map
// keys to lines: should that API change, only locate.go is concerned, and
// the messages would merely lose their line numbers.
package config
