#!/usr/bin/env bash
# Fails when git tracks a file over 2 MB: build output and other large
# files do not belong in the repository (make lint runs this).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit=$((2 * 1024 * 1024))
large=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk -v max="$limit" '$1 > max { printf "  %s (%.1f MB)\n", substr($0, index($0, " ") + 1), $1 / 1048576 }')
if [[ -n $large ]]; then
	echo "large-files: these tracked files are over 2 MB; if they are build output, git rm --cached them and cover them in .gitignore:" >&2
	echo "$large" >&2
	exit 1
fi
