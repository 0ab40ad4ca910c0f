// Command deviceplugin is the lab's GPU device plugin: it speaks the kubelet's device-plugin API
// (v1beta1) for nvidia.com/gpu as NVIDIA's plugin does, and watches GPU health through NVML as that
// plugin's health check does.
//
// Devices are the GPUs NVML enumerates, by UUID (go-nvml dlopen()s libnvidia-ml.so.1: in the lab, the
// NVML SIMULATOR reading the node's driver tree, with faultflow's NVML interposer preloaded, driven by
// the node's toggle). Allocate answers NVIDIA_VISIBLE_DEVICES=<the allocated UUIDs>, so a container's
// CUDA ordinal 0 is the first GPU it was given, whatever that GPU's minor on the node.
//
// Health, as NVIDIA's plugin decides it: XidCriticalError and ECC events are registered on every
// device; an XidCriticalError whose XID is not an application error (ignore list 13, 31, 43, 45, 68,
// 109) marks its device Unhealthy; an event whose device cannot be named, or a wait failing otherwise
// than by timeout (GPU_IS_LOST), marks every device Unhealthy. A device never turns healthy again
// (the real plugin's behaviour: a restart re-reads the devices). Each change is sent on ListAndWatch.
// One line per event ("deviceplugin: event type=0x8 xid=79 uuid=GPU-.. verdict=unhealthy") and per
// failed wait goes to stdout, so a test can tell that an event was processed.
//
// It serves on /var/lib/kubelet/device-plugins/<socket> and registers with the kubelet there (the
// node's own, in its mount namespace).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// The XIDs NVIDIA's device plugin ignores by default: application errors, not a faulty GPU.
var ignoredXids = map[uint64]bool{13: true, 31: true, 43: true, 45: true, 68: true, 109: true}

const (
	eventMask = uint64(nvml.EventTypeXidCriticalError | nvml.EventTypeDoubleBitEccError | nvml.EventTypeSingleBitEccError)
	// How long one event wait lasts (the real plugin's): the interposer delivers an injected event
	// within its own wait slice, whatever this is.
	waitMs = 5000
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	mu      sync.Mutex
	devices []*pluginapi.Device
	changed chan struct{} // closed (and replaced) whenever a device's health changes
}

func newPlugin(uuids []string) *plugin {
	p := &plugin{changed: make(chan struct{})}
	for _, uuid := range uuids {
		p.devices = append(p.devices, &pluginapi.Device{ID: uuid, Health: pluginapi.Healthy})
	}
	return p
}

// snapshot is the device list to send and the channel that closes when it is out of date.
func (p *plugin) snapshot() ([]*pluginapi.Device, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*pluginapi.Device, len(p.devices))
	for i, d := range p.devices {
		out[i] = &pluginapi.Device{ID: d.ID, Health: d.Health}
	}
	return out, p.changed
}

// markUnhealthy marks the devices with these UUIDs (every device when none is named) Unhealthy.
func (p *plugin) markUnhealthy(uuids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for _, d := range p.devices {
		named := len(uuids) == 0
		for _, uuid := range uuids {
			named = named || d.ID == uuid
		}
		if named && d.Health != pluginapi.Unhealthy {
			d.Health = pluginapi.Unhealthy
			changed = true
			fmt.Printf("deviceplugin: device %s is Unhealthy\n", d.ID)
		}
	}
	if changed {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	for {
		devices, changed := p.snapshot()
		if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: devices}); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-stream.Context().Done(): // the kubelet keeps the stream open for as long as it uses us
			return nil
		}
	}
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerAllocateResponse{
			Envs: map[string]string{"NVIDIA_VISIBLE_DEVICES": strings.Join(c.DevicesIds, ",")},
		})
	}
	return resp, nil
}

// gpus is every device NVML enumerates, by index, with its UUID.
func gpus() ([]nvml.Device, []string, error) {
	count, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nil, fmt.Errorf("nvmlDeviceGetCount: %s", nvml.ErrorString(ret))
	}
	var devices []nvml.Device
	var uuids []string
	for i := 0; i < count; i++ {
		device, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nil, fmt.Errorf("nvmlDeviceGetHandleByIndex(%d): %s", i, nvml.ErrorString(ret))
		}
		uuid, ret := device.GetUUID()
		if ret != nvml.SUCCESS {
			return nil, nil, fmt.Errorf("nvmlDeviceGetUUID(%d): %s", i, nvml.ErrorString(ret))
		}
		devices = append(devices, device)
		uuids = append(uuids, uuid)
	}
	return devices, uuids, nil
}

// watchHealth registers every device's XID and ECC events and turns what arrives into health, until
// the process ends.
func (p *plugin) watchHealth(devices []nvml.Device, uuids []string) {
	set, ret := nvml.EventSetCreate()
	if ret != nvml.SUCCESS {
		fmt.Printf("deviceplugin: nvmlEventSetCreate: %s; every device is Unhealthy\n", nvml.ErrorString(ret))
		p.markUnhealthy()
		return
	}
	defer set.Free()
	for i, device := range devices {
		supported, ret := device.GetSupportedEventTypes()
		if ret == nvml.SUCCESS {
			ret = device.RegisterEvents(eventMask&supported, set)
		}
		if ret != nvml.SUCCESS { // no health events from it: it cannot be trusted (the real plugin's rule)
			fmt.Printf("deviceplugin: device %s gives no health events (%s)\n", uuids[i], nvml.ErrorString(ret))
			p.markUnhealthy(uuids[i])
		}
	}
	fmt.Printf("deviceplugin: watching %d GPUs for XID and ECC events\n", len(devices))
	for {
		event, ret := set.Wait(waitMs)
		if ret == nvml.ERROR_TIMEOUT {
			continue
		}
		if ret != nvml.SUCCESS {
			fmt.Printf("deviceplugin: wait=%d (%s) verdict=all-unhealthy\n", int(ret), nvml.ErrorString(ret))
			p.markUnhealthy()
			// A set that keeps failing fails at once: do not spin on it.
			time.Sleep(waitMs * time.Millisecond)
			continue
		}
		uuid, uret := event.Device.GetUUID()
		verdict := "unhealthy"
		switch {
		case event.EventType != nvml.EventTypeXidCriticalError:
			verdict = "skipped"
		case ignoredXids[event.EventData]:
			verdict = "ignored"
		case uret != nvml.SUCCESS:
			verdict = "all-unhealthy"
			uuid = fmt.Sprintf("error-%d", int(uret))
		}
		fmt.Printf("deviceplugin: event type=0x%x xid=%d uuid=%s verdict=%s\n", event.EventType, event.EventData, uuid, verdict)
		switch verdict {
		case "unhealthy":
			p.markUnhealthy(uuid)
		case "all-unhealthy":
			p.markUnhealthy()
		}
	}
}

func main() {
	resource := flag.String("resource", "nvidia.com/gpu", "extended resource name")
	socket := flag.String("socket", "faultflow-gpu.sock", "socket name under "+pluginapi.DevicePluginPath)
	flag.Parse()

	if ret := nvml.Init(); ret != nvml.SUCCESS {
		fmt.Fprintf(os.Stderr, "deviceplugin: nvmlInit: %s\n", nvml.ErrorString(ret))
		os.Exit(2)
	}
	defer nvml.Shutdown()
	devices, uuids, err := gpus()
	if err != nil || len(devices) == 0 {
		fmt.Fprintf(os.Stderr, "deviceplugin: no GPUs from NVML (%v)\n", err)
		os.Exit(2)
	}
	p := newPlugin(uuids)
	go p.watchHealth(devices, uuids)

	path := filepath.Join(pluginapi.DevicePluginPath, *socket)
	os.Remove(path) // a previous run's socket
	listener, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deviceplugin: listen %s: %v\n", path, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, p)
	go server.Serve(listener)

	conn, err := grpc.NewClient("unix://"+pluginapi.KubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "deviceplugin: %v\n", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: *socket, ResourceName: *resource,
	}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Fprintf(os.Stderr, "deviceplugin: register with the kubelet: %v\n", err)
		os.Exit(1)
	}
	conn.Close()
	fmt.Printf("deviceplugin: %d GPUs registered as %s\n", len(devices), *resource)
	select {} // serve until the node goes
}
