#!/bin/sh
# Init-container command: install.sh LIB_DIR [TOGGLE_FILE [OWNER]]
# Copies the fault libraries into LIB_DIR (an emptyDir the worker mounts) and, when given the node
# toggle file, creates it switched off if it does not exist yet: the libraries map the file when the
# process starts and cannot see a file created later. The record is the 256-byte version-2 format of
# steps/gpu/toggle.py. OWNER (uid:gid, the steps image's user) gets the file, mode 0644: the
# toggle-off pod runs as that user and must write it; workers of any uid only read it. An existing
# toggle is handed to OWNER too (a node prepared by an older install.sh has a root-owned one).
set -eu
dest="${1:?usage: install.sh LIB_DIR [TOGGLE_FILE [OWNER]]}"
owner="${3:-}"
source="${FAULTFLOW_SHIM_SOURCE:-/opt/faultflow/libfaultflow_cuda.so}"
cp "$source" "$dest/libfaultflow_cuda.so"
chmod 0755 "$dest/libfaultflow_cuda.so"
echo "faultflow: shim installed at $dest/libfaultflow_cuda.so"
nvml="$(dirname "$source")/libfaultflow_nvml.so"
if [ -f "$nvml" ]; then
    cp "$nvml" "$dest/libfaultflow_nvml.so"
    chmod 0755 "$dest/libfaultflow_nvml.so"
    echo "faultflow: NVML interposer installed at $dest/libfaultflow_nvml.so"
fi
if [ "$#" -ge 2 ]; then
    if [ ! -s "$2" ]; then
        # "0" + the off record's fields, padded with spaces to 255 bytes + newline; the owner and mode
        # are set before the rename, so the file never exists with other ones.
        tmp="$2.tmp.$$"
        printf '%-255s\n' "0 xid=0 expires_ms=0 gpu=-1 v=2 at=0 mode=error after=0 prob=1 seed=0 hang_ms=0 bus=-" > "$tmp"
        chmod 0644 "$tmp"
        if [ -n "$owner" ]; then chown "$owner" "$tmp"; fi
        mv "$tmp" "$2"
        echo "faultflow: toggle $2 created (off)"
    elif [ -n "$owner" ]; then
        chown "$owner" "$2"  # in place: a process that has it mapped keeps reading the same file
    fi
fi
