package sdk

import (
	"context"
	"math/big"
	"time"

	pb "github.com/tlsrelay/tlsrelay/sdk/internal/backendv1"
)

// grpcServer serves a Backend on the plugin side of the wire.
type grpcServer struct {
	pb.UnimplementedBackendServer
	impl Backend
}

func (s *grpcServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	caps := make([]string, len(info.Capabilities))
	for i, c := range info.Capabilities {
		caps[i] = string(c)
	}
	return &pb.InfoResponse{Name: info.Name, Version: info.Version, Capabilities: caps}, nil
}

func (s *grpcServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	err := s.impl.Configure(ctx, ConfigureRequest{ConfigJSON: req.ConfigJson, StateDir: req.StateDir,
		Validity: time.Duration(req.ValiditySeconds) * time.Second})
	return &pb.ConfigureResponse{}, toStatus(err)
}

func (s *grpcServer) CreateCSR(ctx context.Context, req *pb.CreateCSRRequest) (*pb.CreateCSRResponse, error) {
	csr, err := s.impl.CreateCSR(ctx, CSRRequest{
		Key:        KeySpec{Algorithm: req.GetKey().GetAlgorithm(), Size: int(req.GetKey().GetSize())},
		CommonName: req.CommonName,
		SANs:       req.Sans,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CreateCSRResponse{CsrPem: csr.CSRPEM, PrivateKeyPem: csr.Key}, nil
}

func (s *grpcServer) SignCSR(ctx context.Context, req *pb.SignCSRRequest) (*pb.SignCSRResponse, error) {
	cert, err := s.impl.SignCSR(ctx, signRequestFromWire(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SignCSRResponse{CertificateChainPem: cert.ChainPEM}, nil
}

func (s *grpcServer) CA(ctx context.Context, _ *pb.CARequest) (*pb.CAResponse, error) {
	ca, err := s.impl.CA(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CAResponse{CaPem: ca.BundlePEM}, nil
}

func (s *grpcServer) FetchSecret(ctx context.Context, req *pb.FetchSecretRequest) (*pb.FetchSecretResponse, error) {
	secret, err := s.impl.FetchSecret(ctx, req.Ref)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.FetchSecretResponse{Secret: secretToWire(secret)}, nil
}

func (s *grpcServer) StoreSecret(ctx context.Context, req *pb.StoreSecretRequest) (*pb.StoreSecretResponse, error) {
	ref, err := s.impl.StoreSecret(ctx, req.Name, secretFromWire(req.Secret))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.StoreSecretResponse{Ref: ref}, nil
}

func (s *grpcServer) DeleteSecret(ctx context.Context, req *pb.DeleteSecretRequest) (*pb.DeleteSecretResponse, error) {
	return &pb.DeleteSecretResponse{}, toStatus(s.impl.DeleteSecret(ctx, req.Ref))
}

func (s *grpcServer) ExportCA(ctx context.Context, _ *pb.ExportCARequest) (*pb.ExportCAResponse, error) {
	ca, err := s.impl.ExportCA(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ExportCAResponse{Ca: &pb.CAKeyPair{CertificatePem: ca.CertPEM, PrivateKeyPem: ca.Key}}, nil
}

func (s *grpcServer) ImportCA(ctx context.Context, req *pb.ImportCARequest) (*pb.ImportCAResponse, error) {
	err := s.impl.ImportCA(ctx, CAKeyPair{CertPEM: req.GetCa().GetCertificatePem(), Key: req.GetCa().GetPrivateKeyPem()})
	return &pb.ImportCAResponse{}, toStatus(err)
}

func (s *grpcServer) SignCRL(ctx context.Context, req *pb.SignCRLRequest) (*pb.SignCRLResponse, error) {
	r := CRLRequest{ThisUpdate: time.Unix(req.ThisUpdateUnix, 0), NextUpdate: time.Unix(req.NextUpdateUnix, 0),
		Number: new(big.Int).SetBytes(req.Number)}
	for _, e := range req.Revoked {
		r.Revoked = append(r.Revoked, RevokedCertificate{Serial: new(big.Int).SetBytes(e.Serial), RevokedAt: time.Unix(e.RevokedAtUnix, 0)})
	}
	crl, err := SignCRL(ctx, s.impl, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SignCRLResponse{CrlPem: crl.PEM}, nil
}

func (s *grpcServer) GenerateCA(ctx context.Context, req *pb.GenerateCARequest) (*pb.CAResponse, error) {
	ca, err := GenerateCA(ctx, s.impl, GenerateCARequest{CommonName: req.CommonName, Validity: time.Duration(req.ValiditySeconds) * time.Second})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CAResponse{CaPem: ca.BundlePEM}, nil
}

// grpcClient is the host's view of a plugin: a Backend whose calls cross the wire.
type grpcClient struct {
	client pb.BackendClient
}

var _ Backend = (*grpcClient)(nil)

func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	resp, err := c.client.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	info := Info{Name: resp.Name, Version: resp.Version}
	for _, name := range resp.Capabilities {
		info.Capabilities = append(info.Capabilities, Capability(name))
	}
	return info, nil
}

func (c *grpcClient) Configure(ctx context.Context, req ConfigureRequest) error {
	_, err := c.client.Configure(ctx, &pb.ConfigureRequest{ConfigJson: req.ConfigJSON, StateDir: req.StateDir,
		ValiditySeconds: int64(req.Validity / time.Second)})
	return fromStatus(err)
}

func (c *grpcClient) CreateCSR(ctx context.Context, req CSRRequest) (CSR, error) {
	resp, err := c.client.CreateCSR(ctx, &pb.CreateCSRRequest{
		Key:        &pb.KeySpec{Algorithm: req.Key.Algorithm, Size: int32(req.Key.Size)},
		CommonName: req.CommonName,
		Sans:       req.SANs,
	})
	if err != nil {
		return CSR{}, fromStatus(err)
	}
	return CSR{CSRPEM: resp.CsrPem, Key: resp.PrivateKeyPem}, nil
}

func (c *grpcClient) SignCSR(ctx context.Context, req SignRequest) (Certificate, error) {
	resp, err := c.client.SignCSR(ctx, signRequestToWire(req))
	if err != nil {
		return Certificate{}, fromStatus(err)
	}
	return Certificate{ChainPEM: resp.CertificateChainPem}, nil
}

func (c *grpcClient) CA(ctx context.Context) (CA, error) {
	resp, err := c.client.CA(ctx, &pb.CARequest{})
	if err != nil {
		return CA{}, fromStatus(err)
	}
	return CA{BundlePEM: resp.CaPem}, nil
}

func (c *grpcClient) FetchSecret(ctx context.Context, ref string) (Secret, error) {
	resp, err := c.client.FetchSecret(ctx, &pb.FetchSecretRequest{Ref: ref})
	if err != nil {
		return Secret{}, fromStatus(err)
	}
	return secretFromWire(resp.Secret), nil
}

func (c *grpcClient) StoreSecret(ctx context.Context, name string, s Secret) (string, error) {
	resp, err := c.client.StoreSecret(ctx, &pb.StoreSecretRequest{Name: name, Secret: secretToWire(s)})
	if err != nil {
		return "", fromStatus(err)
	}
	return resp.Ref, nil
}

func (c *grpcClient) DeleteSecret(ctx context.Context, ref string) error {
	_, err := c.client.DeleteSecret(ctx, &pb.DeleteSecretRequest{Ref: ref})
	return fromStatus(err)
}

func (c *grpcClient) ExportCA(ctx context.Context) (CAKeyPair, error) {
	resp, err := c.client.ExportCA(ctx, &pb.ExportCARequest{})
	if err != nil {
		return CAKeyPair{}, fromStatus(err)
	}
	return CAKeyPair{CertPEM: resp.GetCa().GetCertificatePem(), Key: resp.GetCa().GetPrivateKeyPem()}, nil
}

func (c *grpcClient) ImportCA(ctx context.Context, ca CAKeyPair) error {
	_, err := c.client.ImportCA(ctx, &pb.ImportCARequest{Ca: &pb.CAKeyPair{CertificatePem: ca.CertPEM, PrivateKeyPem: ca.Key}})
	return fromStatus(err)
}

// SignCRL implements CRLSigner: a plugin without the capability answers Unimplemented.
func (c *grpcClient) SignCRL(ctx context.Context, req CRLRequest) (CRL, error) {
	w := &pb.SignCRLRequest{ThisUpdateUnix: req.ThisUpdate.Unix(), NextUpdateUnix: req.NextUpdate.Unix()}
	if req.Number != nil {
		w.Number = req.Number.Bytes()
	}
	for _, e := range req.Revoked {
		w.Revoked = append(w.Revoked, &pb.RevokedCertificate{Serial: e.Serial.Bytes(), RevokedAtUnix: e.RevokedAt.Unix()})
	}
	resp, err := c.client.SignCRL(ctx, w)
	if err != nil {
		return CRL{}, fromStatus(err)
	}
	return CRL{PEM: resp.CrlPem}, nil
}

// GenerateCA implements CAGenerator: a plugin without the capability (or built before
// it) answers Unimplemented.
func (c *grpcClient) GenerateCA(ctx context.Context, req GenerateCARequest) (CA, error) {
	resp, err := c.client.GenerateCA(ctx, &pb.GenerateCARequest{CommonName: req.CommonName, ValiditySeconds: int64(req.Validity / time.Second)})
	if err != nil {
		return CA{}, fromStatus(err)
	}
	return CA{BundlePEM: resp.CaPem}, nil
}

func secretToWire(s Secret) *pb.SecretBundle {
	return &pb.SecretBundle{
		CertificatePem:   s.CertificatePEM,
		PrivateKeyPem:    s.Key,
		IntermediatesPem: s.IntermediatesPEM,
		Passphrase:       s.Passphrase,
	}
}

func secretFromWire(b *pb.SecretBundle) Secret {
	return Secret{
		CertificatePEM:   b.GetCertificatePem(),
		Key:              b.GetPrivateKeyPem(),
		IntermediatesPEM: b.GetIntermediatesPem(),
		Passphrase:       b.GetPassphrase(),
	}
}
