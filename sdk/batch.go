package sdk

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	grpccodes "google.golang.org/grpc/codes"

	pb "github.com/tlsrelay/tlsrelay/sdk/internal/backendv1"
)

// CapSignCSRs: the backend implements BatchSigner, signing many CSRs in one call.
const CapSignCSRs Capability = "sign_csrs"

// SignResult is one request's outcome in a batch: a certificate, or Err.
type SignResult struct {
	Certificate Certificate
	Err         error
}

// BatchSigner is the optional part of the contract behind CapSignCSRs: one call for
// many CSRs, one result per request in order. Like CRLSigner it is an interface of its
// own, so backends written before it still build.
type BatchSigner interface {
	SignCSRs(ctx context.Context, reqs []SignRequest) ([]SignResult, error)
}

// SignCSRs signs reqs with b: in one call when b is a BatchSigner that implements it,
// one SignCSR at a time otherwise (a plugin that answers Unimplemented included). The
// error is the call's (the plugin unreachable); each request's own is in its result.
func SignCSRs(ctx context.Context, b Backend, reqs []SignRequest) ([]SignResult, error) {
	if s, ok := b.(BatchSigner); ok {
		results, err := s.SignCSRs(ctx, reqs)
		if !IsCode(err, CodeUnimplemented) {
			return results, err
		}
	}
	results := make([]SignResult, len(reqs))
	for i, req := range reqs {
		cert, err := b.SignCSR(ctx, req)
		results[i] = SignResult{Certificate: cert, Err: err}
	}
	return results, nil
}

// SignInParallel is a BatchSigner's body for a backend whose SignCSR is safe to call
// concurrently: reqs are signed on every core.
func SignInParallel(ctx context.Context, sign func(context.Context, SignRequest) (Certificate, error), reqs []SignRequest) []SignResult {
	results := make([]SignResult, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(reqs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cert, err := sign(ctx, reqs[i])
				results[i] = SignResult{Certificate: cert, Err: err}
			}
		}()
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func signRequestFromWire(req *pb.SignCSRRequest) SignRequest {
	return SignRequest{CSRPEM: req.CsrPem, Profile: Profile(req.Profile),
		Validity: time.Duration(req.ValiditySeconds) * time.Second, Unit: req.Unit}
}

func signRequestToWire(req SignRequest) *pb.SignCSRRequest {
	return &pb.SignCSRRequest{CsrPem: req.CSRPEM, Profile: string(req.Profile),
		ValiditySeconds: int64(req.Validity / time.Second), Unit: req.Unit}
}

func (s *grpcServer) SignCSRs(ctx context.Context, req *pb.SignCSRsRequest) (*pb.SignCSRsResponse, error) {
	bs, ok := s.impl.(BatchSigner)
	if !ok {
		return nil, toStatus(Errorf(CodeUnimplemented, "", "this backend does not sign in batches"))
	}
	reqs := make([]SignRequest, len(req.Requests))
	for i, r := range req.Requests {
		reqs[i] = signRequestFromWire(r)
	}
	results, err := bs.SignCSRs(ctx, reqs)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(results) != len(reqs) {
		return nil, toStatus(Errorf(CodeInternal, "", "SignCSRs returned %d results for %d requests", len(results), len(reqs)))
	}
	out := &pb.SignCSRsResponse{Results: make([]*pb.SignCSRResult, len(results))}
	for i, r := range results {
		out.Results[i] = &pb.SignCSRResult{CertificateChainPem: r.Certificate.ChainPEM, Error: itemErrorToWire(r.Err)}
	}
	return out, nil
}

// SignCSRs implements BatchSigner over the wire.
func (c *grpcClient) SignCSRs(ctx context.Context, reqs []SignRequest) ([]SignResult, error) {
	w := &pb.SignCSRsRequest{Requests: make([]*pb.SignCSRRequest, len(reqs))}
	for i, r := range reqs {
		w.Requests[i] = signRequestToWire(r)
	}
	resp, err := c.client.SignCSRs(ctx, w)
	if err != nil {
		return nil, fromStatus(err)
	}
	if len(resp.Results) != len(reqs) {
		return nil, Errorf(CodeInternal, "", "SignCSRs answered %d results for %d requests", len(resp.Results), len(reqs))
	}
	results := make([]SignResult, len(reqs))
	for i, r := range resp.Results {
		results[i] = SignResult{Certificate: Certificate{ChainPEM: r.CertificateChainPem}, Err: itemErrorFromWire(r.Error)}
		if results[i].Err == nil && len(r.CertificateChainPem) == 0 {
			results[i].Err = Errorf(CodeInternal, reqs[i].Unit, "SignCSRs returned neither a certificate nor an error")
		}
	}
	return results, nil
}

func itemErrorToWire(err error) *pb.ItemError {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeOf(err), Msg: err.Error()}
	}
	return &pb.ItemError{GrpcCode: uint32(codeToGRPC[e.Code]), Ref: e.Ref, Message: e.Msg}
}

func itemErrorFromWire(w *pb.ItemError) error {
	if w == nil {
		return nil
	}
	return &Error{Code: fromGRPC(grpccodes.Code(w.GrpcCode)), Ref: w.Ref, Msg: w.Message}
}
