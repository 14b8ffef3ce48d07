#pragma once
// Move-only owners for GSS-API and krb5 handles, so that every early return releases what it holds.
// Internal to broker/kerberos: GSS types never cross the Delegator interface.
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>
#include <krb5.h>

#include <string>
#include <utility>

namespace orthrus::broker::kerberos {

// MIT exports no symbol for SPNEGO's OID; this is RFC 4178's 1.3.6.1.5.5.2.
inline gss_OID SpnegoOid() {
  static gss_OID_desc oid = {6, const_cast<char*>("\x2b\x06\x01\x05\x05\x02")};
  return &oid;
}

// {SPNEGO} for both acquire calls: MIT's GSS_C_NO_OID_SET means krb5 only, and a krb5-only
// credential makes SPNEGO fall back to the process default credential (the broker itself).
inline gss_OID_set SpnegoOnly() {
  static gss_OID_set_desc set = {1, SpnegoOid()};
  return &set;
}

template <class T, T kEmpty, class Release>
class GssHandle {
 public:
  GssHandle() = default;
  ~GssHandle() { Reset(); }
  GssHandle(GssHandle&& other) noexcept : value_(std::exchange(other.value_, kEmpty)) {}
  GssHandle& operator=(GssHandle&& other) noexcept {
    if (this != &other) {
      Reset();
      value_ = std::exchange(other.value_, kEmpty);
    }
    return *this;
  }
  GssHandle(const GssHandle&) = delete;
  GssHandle& operator=(const GssHandle&) = delete;

  T get() const { return value_; }
  // For GSS calls that create the handle: drops any previous one first.
  T* out() {
    Reset();
    return &value_;
  }
  // For GSS calls that continue with the handle (gss_init_sec_context's second round).
  T* inout() { return &value_; }
  explicit operator bool() const { return value_ != kEmpty; }
  void Reset() {
    if (value_ != kEmpty) Release()(&value_);
    value_ = kEmpty;
  }

 private:
  T value_ = kEmpty;
};

struct ReleaseName {
  void operator()(gss_name_t* name) const {
    OM_uint32 minor = 0;
    gss_release_name(&minor, name);
  }
};
struct ReleaseCred {
  void operator()(gss_cred_id_t* cred) const {
    OM_uint32 minor = 0;
    gss_release_cred(&minor, cred);
  }
};
struct DeleteContext {
  void operator()(gss_ctx_id_t* ctx) const {
    OM_uint32 minor = 0;
    gss_delete_sec_context(&minor, ctx, GSS_C_NO_BUFFER);
  }
};

using GssName = GssHandle<gss_name_t, GSS_C_NO_NAME, ReleaseName>;
using GssCred = GssHandle<gss_cred_id_t, GSS_C_NO_CREDENTIAL, ReleaseCred>;
using GssContext = GssHandle<gss_ctx_id_t, GSS_C_NO_CONTEXT, DeleteContext>;

// Output buffer filled by GSS-API; token memory belongs to the library until released.
class GssBuffer {
 public:
  GssBuffer() = default;
  ~GssBuffer() {
    OM_uint32 minor = 0;
    gss_release_buffer(&minor, &buffer_);
  }
  GssBuffer(const GssBuffer&) = delete;
  GssBuffer& operator=(const GssBuffer&) = delete;
  gss_buffer_t get() { return &buffer_; }
  const unsigned char* data() const { return static_cast<const unsigned char*>(buffer_.value); }
  size_t size() const { return buffer_.length; }

 private:
  gss_buffer_desc buffer_ = GSS_C_EMPTY_BUFFER;
};

// One krb5_context per operation: contexts are not safe to share between threads.
class Krb5Context {
 public:
  Krb5Context() = default;
  ~Krb5Context() {
    if (ctx_ != nullptr) krb5_free_context(ctx_);
  }
  Krb5Context(const Krb5Context&) = delete;
  Krb5Context& operator=(const Krb5Context&) = delete;
  krb5_error_code Init() { return krb5_init_context(&ctx_); }
  krb5_context get() const { return ctx_; }
  // Message for `code`, including any extended text the last failing call attached.
  std::string Message(krb5_error_code code) const {
    const char* msg = krb5_get_error_message(ctx_, code);
    std::string out = msg != nullptr ? msg : "unknown krb5 error";
    krb5_free_error_message(ctx_, msg);
    return out;
  }

 private:
  krb5_context ctx_ = nullptr;
};

// Releases a krb5 object with its context when the scope ends.
template <class F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() { f_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

}  // namespace orthrus::broker::kerberos
