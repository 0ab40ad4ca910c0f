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
        # "0" + the off record's fields, padded with spaces to 255 bytes + newline. Written in place at
        # offset 0 without truncating (dd conv=notrunc), never by rename: a rename would replace a file
        # another worker's process may already map (it would keep the old inode and miss every later
        # switch-on), and two init containers racing on one node write the same bytes to the same file.
        printf '%-255s\n' "0 xid=0 expires_ms=0 gpu=-1 v=2 at=0 mode=error after=0 prob=1 seed=0 hang_ms=0 bus=-" |
            dd of="$2" conv=notrunc status=none
        chmod 0644 "$2"
        echo "faultflow: toggle $2 created (off)"
    fi
    if [ -n "$owner" ]; then
        chown "$owner" "$2"  # in place: a process that has it mapped keeps reading the same file
    fi
fi
