#!/bin/sh
# Init-container command: install.sh LIB_DIR [TOGGLE_FILE]
# Copies the shim into LIB_DIR (an emptyDir the worker mounts) and, when given the node toggle file,
# creates it switched off if it does not exist yet: the shim maps the file when the worker starts and
# cannot see a file created later. The record is the 64-byte format of steps/toggle.py.
set -eu
dest="${1:?usage: install.sh LIB_DIR [TOGGLE_FILE]}"
cp "${FAULTFLOW_SHIM_SOURCE:-/opt/faultflow/libfaultflow_cuda.so}" "$dest/libfaultflow_cuda.so"
chmod 0755 "$dest/libfaultflow_cuda.so"
echo "faultflow: shim installed at $dest/libfaultflow_cuda.so"
if [ "$#" -ge 2 ] && [ ! -s "$2" ]; then
    # "0" + " xid=0 expires_ms=0 gpu=-1" padded with spaces to 63 bytes + newline
    printf '%-63s\n' "0 xid=0 expires_ms=0 gpu=-1" > "$2.tmp.$$" && mv "$2.tmp.$$" "$2"
    echo "faultflow: toggle $2 created (off)"
fi
