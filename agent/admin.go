package agent

import (
	"context"
	"maps"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gossipmesh/mesh/meshpb"
	"github.com/gossipmesh/mesh/peer"
)

// watchBuffer is how many events a Watch stream holds for a slow client
// before it drops (and counts) them.
const watchBuffer = 256

// admin serves MeshAdmin for an agent.
type admin struct {
	meshpb.UnimplementedMeshAdminServer
	a *Agent
}

var _ meshpb.MeshAdminServer = (*admin)(nil)

// MembersResponse describes p's view as the Members call returns it:
// every member (removed ones with their last meta), the view digest and
// whether the cluster converged, read together.
func MembersResponse(p *peer.Peer) *meshpb.MembersResponse {
	cfg, view := p.Config(), p.View()
	resp := &meshpb.MembersResponse{
		Self:       p.Addr(),
		ViewDigest: view.Digest,
		Converged:  view.Converged,
		Period:     durationpb.New(cfg.PingPeriod),
		Cluster:    cfg.ClusterName,
	}
	for _, m := range view.Members {
		resp.Members = append(resp.Members, &meshpb.Member{Addr: m.Addr, Meta: m.Meta, State: m.State})
	}
	return resp
}

func (s *admin) Members(context.Context, *meshpb.MembersRequest) (*meshpb.MembersResponse, error) {
	return MembersResponse(s.a.peer), nil
}

func (s *admin) Join(ctx context.Context, req *meshpb.JoinRequest) (*meshpb.JoinResponse, error) {
	if len(req.GetAddrs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "join: no address given")
	}
	seeds, err := s.a.joiner.add(ctx, req.GetAddrs(), time.Now(), true)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "join: %v", oneLine(err))
	}
	s.a.log.Info("join requested", "addrs", req.GetAddrs(), "seeds", seeds)
	return &meshpb.JoinResponse{Seeds: seeds}, nil
}

func (s *admin) SetMeta(_ context.Context, req *meshpb.SetMetaRequest) (*meshpb.SetMetaResponse, error) {
	a := s.a
	a.metaMu.Lock()
	defer a.metaMu.Unlock()
	cur := a.peer.GetMembers()[a.self]
	if cur == nil {
		return nil, status.Error(codes.FailedPrecondition, "set meta: the agent has left the cluster")
	}
	next := proto.Clone(cur).(*meshpb.PeerMeta)
	if req.Name != nil {
		next.Name = req.GetName()
	}
	if req.GetReplaceTags() || next.Tags == nil {
		next.Tags = map[string]string{}
	}
	maps.Copy(next.Tags, req.GetTags())
	for _, k := range req.GetDeleteTags() {
		delete(next.Tags, k)
	}
	for k := range next.Tags {
		if k == "" {
			return nil, status.Error(codes.InvalidArgument, "set meta: a tag needs a key")
		}
	}
	if err := a.peer.SetMeta(next); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "set meta: %v", err)
	}
	a.log.Info("meta updated", "name", next.GetName(), "tags", next.GetTags())
	return &meshpb.SetMetaResponse{Meta: next, Self: a.self}, nil
}

func (s *admin) Leave(context.Context, *meshpb.LeaveRequest) (*meshpb.LeaveResponse, error) {
	resp := s.a.leave()
	s.a.requestStop()
	return resp, nil
}

func (s *admin) Watch(_ *meshpb.WatchRequest, stream meshpb.MeshAdmin_WatchServer) error {
	sub := s.a.peer.Subscribe(watchBuffer)
	defer sub.Close()
	// The header tells the client it is subscribed: every event after it
	// reaches the stream, so a client can wait for it before acting.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				return nil // the agent stopped
			}
			err := stream.Send(&meshpb.WatchEvent{
				Type:    EventType(ev.Type),
				Addr:    ev.Addr,
				Meta:    ev.Meta,
				Time:    timestamppb.New(ev.Time),
				Dropped: sub.Dropped(),
			})
			if err != nil {
				return err
			}
		}
	}
}

// EventType maps a peer event type to its wire value.
func EventType(t peer.EventType) meshpb.EventType {
	switch t {
	case peer.EventJoin:
		return meshpb.EventType_EVENT_TYPE_JOIN
	case peer.EventUpdate:
		return meshpb.EventType_EVENT_TYPE_UPDATE
	case peer.EventLeave:
		return meshpb.EventType_EVENT_TYPE_LEAVE
	case peer.EventFailed:
		return meshpb.EventType_EVENT_TYPE_FAILED
	}
	return meshpb.EventType_EVENT_TYPE_UNSPECIFIED
}

// oneLine puts the lines of an errors.Join on one line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
