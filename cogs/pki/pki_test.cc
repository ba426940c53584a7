// The CA's certificates checked as a TLS peer checks them: libcrypto's chain verification with the
// purpose (TLS server, TLS client) and the host name or IP address a client expects.
#include "cogs/pki/pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "test/support/temp_dir.h"

namespace cogs::pki {
namespace {

using namespace std::chrono_literals;
constexpr Duration kDay = 24h;

X509* LoadCert(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) {
        return nullptr;
    }
    X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return cert;
}

struct Check {
    int purpose = X509_PURPOSE_SSL_SERVER;
    std::string host{};
    std::string ip{};
};

// X509_V_OK if `leaf` chains to `ca` for `check`, else OpenSSL's verification error.
int Verify(const std::string& ca, const std::string& leaf, const Check& check) {
    X509* ca_cert = LoadCert(ca);
    X509* leaf_cert = LoadCert(leaf);
    EXPECT_NE(ca_cert, nullptr);
    EXPECT_NE(leaf_cert, nullptr);
    if (!ca_cert || !leaf_cert) {
        X509_free(ca_cert);
        X509_free(leaf_cert);
        return -1;
    }
    X509_STORE* store = X509_STORE_new();
    X509_STORE_add_cert(store, ca_cert);
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf_cert, nullptr);
    X509_STORE_CTX_set_purpose(ctx, check.purpose);
    X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
    if (!check.host.empty()) {
        X509_VERIFY_PARAM_set1_host(param, check.host.c_str(), 0);
    }
    if (!check.ip.empty()) {
        X509_VERIFY_PARAM_set1_ip_asc(param, check.ip.c_str());
    }
    const int ok = X509_verify_cert(ctx);
    const int error = ok == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca_cert);
    X509_free(leaf_cert);
    return error;
}

unsigned Mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 0777;
}

class PkiTest : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_TRUE(MakeCa(ca_.cert_file, ca_.key_file, "cogs test CA", 30 * kDay)); }

    testing::TempDir dir_{"pki-test"};
    CaFiles ca_{dir_ / "ca.crt", dir_ / "ca.key"};
};

TEST_F(PkiTest, IssuedCertificateVerifiesForItsNamesAsServerAndClient) {
    const std::string crt = dir_ / "cogsd.crt";
    const std::string key = dir_ / "cogsd.key";
    ASSERT_TRUE(Issue(ca_, crt, key, "cogsd", {"localhost", "cogsd.test"}, {"127.0.0.1", "::1"}, kDay));

    EXPECT_EQ(Verify(ca_.cert_file, crt, {.host = "localhost"}), X509_V_OK);
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.host = "cogsd.test"}), X509_V_OK);
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.ip = "127.0.0.1"}), X509_V_OK);
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.ip = "::1"}), X509_V_OK);
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.purpose = X509_PURPOSE_SSL_CLIENT}), X509_V_OK);

    EXPECT_EQ(Verify(ca_.cert_file, crt, {.host = "other.test"}), X509_V_ERR_HOSTNAME_MISMATCH);
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.ip = "10.0.0.1"}), X509_V_ERR_IP_ADDRESS_MISMATCH);
    // The CN is an identity, not a name a client accepts (no SAN fallback when a SAN exists).
    EXPECT_EQ(Verify(ca_.cert_file, crt, {.host = "cogsd"}), X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(PkiTest, CertificateOfAnotherCaDoesNotVerify) {
    CaFiles other{dir_ / "other.crt", dir_ / "other.key"};
    ASSERT_TRUE(MakeCa(other.cert_file, other.key_file, "another CA", kDay));
    const std::string crt = dir_ / "h.crt";
    ASSERT_TRUE(Issue(other, crt, dir_ / "h.key", "host-1", {"localhost"}, {}, kDay));
    EXPECT_EQ(Verify(ca_.cert_file, crt, {}), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
    EXPECT_EQ(Verify(other.cert_file, crt, {}), X509_V_OK);
}

TEST_F(PkiTest, KeysArePrivateAndCertificatesSayWhatWasAsked) {
    const std::string crt = dir_ / "host-1.crt";
    const std::string key = dir_ / "host-1.key";
    const int64_t before = WallNowMs();
    ASSERT_TRUE(Issue(ca_, crt, key, "host-1", {"host-1.test"}, {"10.1.2.3"}, 2 * kDay));
    EXPECT_EQ(Mode(key), 0600u);
    EXPECT_EQ(Mode(ca_.key_file), 0600u);
    EXPECT_EQ(Mode(crt), 0644u);

    auto info = ReadCertificate(crt);
    ASSERT_TRUE(info) << info.error().ToString();
    EXPECT_EQ(info->subject_cn, "host-1");
    EXPECT_EQ(info->issuer_cn, "cogs test CA");
    EXPECT_FALSE(info->is_ca);
    EXPECT_EQ(info->dns_names, std::vector<std::string>{"host-1.test"});
    EXPECT_EQ(info->ip_addresses, std::vector<std::string>{"10.1.2.3"});
    EXPECT_LE(info->not_before_ms, before);
    EXPECT_NEAR(static_cast<double>(info->not_after_ms - before), 2.0 * 86400 * 1000, 60 * 1000);

    auto ca = ReadCertificate(ca_.cert_file);
    ASSERT_TRUE(ca);
    EXPECT_TRUE(ca->is_ca);
    EXPECT_EQ(ca->subject_cn, "cogs test CA");

    // Serials are random: two certificates for the same name differ.
    ASSERT_TRUE(Issue(ca_, crt, key, "host-1", {"host-1.test"}, {}, kDay));
    auto again = ReadCertificate(crt);
    ASSERT_TRUE(again);
    EXPECT_NE(again->serial_hex, info->serial_hex);
    EXPECT_FALSE(again->serial_hex.empty());
}

TEST_F(PkiTest, BadInputIsRefusedAndNothingIsWritten) {
    const std::string crt = dir_ / "x.crt";
    const std::string key = dir_ / "x.key";
    auto bad_ip = Issue(ca_, crt, key, "x", {}, {"300.1.1.1"}, kDay);
    ASSERT_FALSE(bad_ip);
    EXPECT_EQ(bad_ip.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(bad_ip.error().message.find("ip_addresses"), std::string::npos);

    auto bad_dns = Issue(ca_, crt, key, "x", {"a,IP:1.2.3.4"}, {}, kDay);
    ASSERT_FALSE(bad_dns);
    EXPECT_NE(bad_dns.error().message.find("dns_names"), std::string::npos);

    EXPECT_EQ(Issue(ca_, crt, key, "", {}, {}, kDay).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(Issue(ca_, crt, key, "x", {}, {}, Duration::zero()).error().code, ErrorCode::kInvalidArgument);
    EXPECT_EQ(MakeCa(crt, key, std::string(65, 'a'), kDay).error().code, ErrorCode::kInvalidArgument);

    // A CA key that is not the CA certificate's.
    CaFiles other{dir_ / "other.crt", dir_ / "other.key"};
    ASSERT_TRUE(MakeCa(other.cert_file, other.key_file, "another CA", kDay));
    auto mismatch = Issue({ca_.cert_file, other.key_file}, crt, key, "x", {}, {}, kDay);
    ASSERT_FALSE(mismatch);
    EXPECT_EQ(mismatch.error().code, ErrorCode::kInvalidArgument);

    auto missing = Issue({dir_ / "nope.crt", ca_.key_file}, crt, key, "x", {}, {}, kDay);
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ErrorCode::kInvalidArgument);

    EXPECT_FALSE(std::filesystem::exists(crt));
    EXPECT_FALSE(std::filesystem::exists(key));
    EXPECT_EQ(ReadCertificate(dir_ / "nope.crt").error().code, ErrorCode::kNotFound);
    EXPECT_EQ(ReadCertificate(ca_.key_file).error().code, ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace cogs::pki
