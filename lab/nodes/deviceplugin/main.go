// Command deviceplugin is the lab's GPU device plugin: it speaks the kubelet's device-plugin API
// (v1beta1) for nvidia.com/gpu as NVIDIA's plugin does, for the GPUs the node's driver /proc tree
// lists (/proc/driver/nvidia/gpus/<bus id>/information, the lab's GPU driver SIMULATOR's tree).
//
// Devices are the GPUs' UUIDs; Allocate answers NVIDIA_VISIBLE_DEVICES=<the allocated UUIDs>, so a
// container's CUDA ordinal 0 is the first GPU it was given, whatever that GPU's minor on the node.
// It serves on /var/lib/kubelet/device-plugins/<socket> and registers with the kubelet there (the
// node's own, in its mount namespace). No GPU health is watched: the list is sent once and held.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	devices []*pluginapi.Device
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, stream grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := stream.Send(&pluginapi.ListAndWatchResponse{Devices: p.devices}); err != nil {
		return err
	}
	<-stream.Context().Done() // the kubelet keeps the stream open for as long as it uses us
	return nil
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

// gpus reads the UUID of every GPU under procRoot/driver/nvidia/gpus, in bus-id order.
func gpus(procRoot string) ([]*pluginapi.Device, error) {
	files, err := filepath.Glob(filepath.Join(procRoot, "driver/nvidia/gpus/*/information"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*pluginapi.Device
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		scanner := bufio.NewScanner(f)
		for scanner.Scan() {
			if key, value, ok := strings.Cut(scanner.Text(), ":"); ok && strings.TrimSpace(key) == "GPU UUID" {
				out = append(out, &pluginapi.Device{ID: strings.TrimSpace(value), Health: pluginapi.Healthy})
			}
		}
		f.Close()
	}
	return out, nil
}

func main() {
	resource := flag.String("resource", "nvidia.com/gpu", "extended resource name")
	socket := flag.String("socket", "faultflow-gpu.sock", "socket name under "+pluginapi.DevicePluginPath)
	procRoot := flag.String("proc-root", "/proc", "where the driver's /proc tree is")
	flag.Parse()

	devices, err := gpus(*procRoot)
	if err != nil || len(devices) == 0 {
		fmt.Fprintf(os.Stderr, "deviceplugin: no GPUs under %s/driver/nvidia/gpus (%v)\n", *procRoot, err)
		os.Exit(2)
	}
	path := filepath.Join(pluginapi.DevicePluginPath, *socket)
	os.Remove(path) // a previous run's socket
	listener, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "deviceplugin: listen %s: %v\n", path, err)
		os.Exit(1)
	}
	server := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(server, &plugin{devices: devices})
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
