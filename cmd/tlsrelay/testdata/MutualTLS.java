// A Java service's side of a mutual-TLS handshake with a unit's keystore.p12 and
// truststore.p12 (certificate.output.formats: [pkcs12]), as the README shows it:
//
//   java MutualTLS.java server DIR PASSWORD PORT          accept one client, greet it
//   java MutualTLS.java client DIR PASSWORD PORT NAME     connect, check the server is NAME
import java.io.*;
import java.net.*;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.net.ssl.*;

public class MutualTLS {
    public static void main(String[] args) throws Exception {
        String mode = args[0], dir = args[1];
        char[] password = args[2].toCharArray();
        int port = Integer.parseInt(args[3]);

        KeyStore keystore = KeyStore.getInstance("PKCS12");
        keystore.load(new FileInputStream(dir + "/keystore.p12"), password);
        KeyStore truststore = KeyStore.getInstance("PKCS12");
        truststore.load(new FileInputStream(dir + "/truststore.p12"), password);
        KeyManagerFactory keys = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        keys.init(keystore, password);
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(truststore);
        SSLContext tls = SSLContext.getInstance("TLS");
        tls.init(keys.getKeyManagers(), trust.getTrustManagers(), null);

        if (mode.equals("server")) {
            SSLServerSocket server = (SSLServerSocket) tls.getServerSocketFactory()
                .createServerSocket(port, 1, InetAddress.getByName("127.0.0.1"));
            server.setNeedClientAuth(true);
            System.out.println("listening");
            try (SSLSocket peer = (SSLSocket) server.accept()) {
                peer.startHandshake();
                X509Certificate client = (X509Certificate) peer.getSession().getPeerCertificates()[0];
                PrintWriter out = new PrintWriter(peer.getOutputStream(), true);
                out.println("hello " + client.getSubjectX500Principal().getName());
            }
        } else {
            Socket plain = new Socket("127.0.0.1", port);
            SSLSocket socket = (SSLSocket) tls.getSocketFactory().createSocket(plain, args[4], port, true);
            SSLParameters params = socket.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS"); // the server's certificate must name args[4]
            params.setServerNames(List.of(new SNIHostName(args[4])));
            socket.setSSLParameters(params);
            socket.startHandshake();
            BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream()));
            System.out.println(in.readLine());
            socket.close();
        }
    }
}
