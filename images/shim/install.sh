#!/bin/sh
# Init-container command: install.sh LIB_DIR [TOGGLE_FILE]
# Copies the fault libraries into LIB_DIR (an emptyDir the worker mounts) and, when given the node
# toggle file, creates it switched off if it does not exist yet: the libraries map the file when the
# process starts and cannot see a file created later. The record is the 256-byte version-2 format of
# steps/gpu/toggle.py.
set -eu
dest="${1:?usage: install.sh LIB_DIR [TOGGLE_FILE]}"
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
if [ "$#" -ge 2 ] && [ ! -s "$2" ]; then
    # "0" + the off record's fields, padded with spaces to 255 bytes + newline
    printf '%-255s\n' "0 xid=0 expires_ms=0 gpu=-1 v=2 at=0 mode=error after=0 prob=1 seed=0 hang_ms=0 bus=-" > "$2.tmp.$$" && mv "$2.tmp.$$" "$2"
    echo "faultflow: toggle $2 created (off)"
fi
