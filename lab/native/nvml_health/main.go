// nvml-health: an NVML consumer through go-nvml doing what the NVIDIA k8s-device-plugin's health
// check does (internal/rm/health.go): register XidCriticalError and ECC events on every device, wait,
// drop what it ignores, and mark devices unhealthy. Written for faultflow's tests; it reaches
// libnvidia-ml.so.1 the way the plugin does (go-nvml dlopen()s it RTLD_GLOBAL and calls by symbol).
//
// Usage: nvml-health [-waits N] [-timeout-ms T]
//
// With -waits N it waits N times; otherwise one wait per stdin line (the line, if a number, is that
// wait's timeout), so a test can switch the toggle between waits. One line per device at start
// ("device index=I uuid=U bus=B registered=0x.. ret=R"), "ready devices=N", then one line per wait:
//
//	wait=<NVML return> verdict=timeout
//	wait=0 type=0x8 xid=79 uuid=GPU-.. gi=4294967295 ci=4294967295 verdict=unhealthy
//	wait=0 type=0x8 xid=43 ... verdict=ignored       (the plugin's default ignore list)
//	wait=0 type=0x2 ... verdict=skipped               (not an XID event: the plugin skips it)
//	wait=15 verdict=all-unhealthy                     (any other failure marks every device unhealthy)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// The device plugin's application-error XIDs: not a GPU fault, never make a device unhealthy.
var ignoredXids = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

const eventMask = uint64(nvml.EventTypeXidCriticalError | nvml.EventTypeDoubleBitEccError | nvml.EventTypeSingleBitEccError)

func busID(raw [32]int8) string {
	var b strings.Builder
	for _, c := range raw {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func main() {
	waits := flag.Int("waits", 0, "number of waits (0: one per stdin line)")
	timeout := flag.Uint("timeout-ms", 100, "timeout of each wait")
	flag.Parse()

	if ret := nvml.Init(); ret != nvml.SUCCESS {
		fmt.Printf("init=%d\n", int(ret))
		os.Exit(1)
	}
	defer nvml.Shutdown()

	set, ret := nvml.EventSetCreate()
	if ret != nvml.SUCCESS {
		fmt.Printf("eventset=%d\n", int(ret))
		os.Exit(1)
	}
	defer set.Free()

	count, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		fmt.Printf("count=%d\n", int(ret))
		os.Exit(1)
	}
	for i := 0; i < count; i++ {
		device, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			fmt.Printf("device index=%d handle=%d\n", i, int(ret))
			continue
		}
		uuid, _ := device.GetUUID()
		pci, _ := device.GetPciInfo()
		supported, ret := device.GetSupportedEventTypes()
		if ret != nvml.SUCCESS {
			fmt.Printf("device index=%d uuid=%s supported=%d\n", i, uuid, int(ret))
			continue
		}
		ret = device.RegisterEvents(eventMask&supported, set)
		fmt.Printf("device index=%d uuid=%s bus=%s registered=0x%x ret=%d\n", i, uuid, busID(pci.BusId), eventMask&supported, int(ret))
	}

	fmt.Printf("ready devices=%d\n", count)

	wait := func(ms uint32) {
		e, ret := set.Wait(ms)
		switch {
		case ret == nvml.ERROR_TIMEOUT:
			fmt.Printf("wait=%d verdict=timeout\n", int(ret))
		case ret != nvml.SUCCESS:
			fmt.Printf("wait=%d verdict=all-unhealthy\n", int(ret))
		default:
			uuid, uret := e.Device.GetUUID()
			verdict := "unhealthy"
			if e.EventType != nvml.EventTypeXidCriticalError {
				verdict = "skipped"
			} else if ignoredXids[e.EventData] {
				verdict = "ignored"
			} else if uret != nvml.SUCCESS {
				verdict = "all-unhealthy"
				uuid = fmt.Sprintf("error-%d", int(uret))
			}
			fmt.Printf("wait=0 type=0x%x xid=%d uuid=%s gi=%d ci=%d verdict=%s\n", e.EventType, e.EventData, uuid,
				e.GpuInstanceId, e.ComputeInstanceId, verdict)
		}
	}

	if *waits > 0 {
		for i := 0; i < *waits; i++ {
			wait(uint32(*timeout))
		}
		return
	}
	scanner := bufio.NewScanner(os.Stdin)
	for scanner.Scan() {
		ms := uint32(*timeout)
		if n, err := strconv.ParseUint(strings.TrimSpace(scanner.Text()), 10, 32); err == nil {
			ms = uint32(n)
		}
		wait(ms)
	}
}
