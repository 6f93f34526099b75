#!/usr/bin/env bash
# Regenerate requirements.lock and requirements-runtime.lock, with SHA-256 hashes.
#
# The versions are those installed in .venv. requirements.lock pins what the project's
# dependencies and its `dev` extra need, requirements-runtime.lock what the dependencies
# alone need; both add setuptools, which builds the package. Packages in .venv that neither
# needs, such as those of the `local` extra (requirements-local.lock), are left out.
# pip-tools, installed in a throwaway virtual environment, resolves the pins and adds the
# hashes of every file the package index offers for each pinned version. The locks therefore
# install on every platform and Python version that the pinned releases support.
#
# Usage: scripts/lock.sh
# Needs the package index (about two minutes). Upgrade a package in .venv first to lock a new
# version of it; review the diff of both files before committing them.
set -euo pipefail
cd "$(dirname "$0")/.."

PIP_VERSION=26.3
PIP_TOOLS_VERSION=7.7.0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet "pip==$PIP_VERSION" "pip-tools==$PIP_TOOLS_VERSION"

.venv/bin/python -m pip freeze --all --exclude-editable | grep -v -E "^(pip|py-spy)==" \
    >"$work/installed.txt"
echo "setuptools" >"$work/build.in"

compile() {
    "$work/tools/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
        --no-header --no-annotate --no-emit-index-url --no-emit-find-links "$@"
}

compile --output-file "$work/dev.lock" --constraint "$work/installed.txt" --extra dev \
    pyproject.toml "$work/build.in"
compile --output-file "$work/runtime.lock" --constraint "$work/installed.txt" \
    pyproject.toml "$work/build.in"

{
    echo "# Exact versions and SHA-256 hashes of every package the gateway and its tests install;"
    echo "# make installs it with pip install --require-hashes. Regenerate with: scripts/lock.sh"
    cat "$work/dev.lock"
} >requirements.lock

{
    echo "# Exact versions and SHA-256 hashes of the packages the gateway needs at run time, and"
    echo "# setuptools to build it; the Docker image installs these with --require-hashes."
    echo "# Regenerate with: scripts/lock.sh"
    cat "$work/runtime.lock"
} >requirements-runtime.lock

echo "wrote requirements.lock and requirements-runtime.lock"
