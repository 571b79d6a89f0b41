# Puts the project's Node.js 24 (installed by scripts/setup.sh) first on PATH for this shell,
# and makes node-gyp build native modules against its headers. Source it; do not run it.
_pv_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
for _pv_node in "$_pv_root"/.toolchain/node_modules/node-linux-*; do
  if [ -x "$_pv_node/bin/node" ]; then
    export PATH="$_pv_node/bin:$_pv_root/bin:$PATH"
    export npm_config_nodedir="$_pv_node"
  fi
done
unset _pv_root _pv_node
