// Internal: owning handles on libcurl's C objects, so that each is released exactly once on
// every path (unique_ptr with the matching cleanup function). Wrap a C object in one of
// these on the line that creates it.
#pragma once

#include <memory>

#include <curl/curl.h>

namespace emissions::detail::webhooks {

struct EasyDeleter {
  void operator()(CURL* easy) const noexcept { curl_easy_cleanup(easy); }
};
struct MultiDeleter {
  // Remove every easy handle from the multi handle first.
  void operator()(CURLM* multi) const noexcept { (void)curl_multi_cleanup(multi); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
struct UrlDeleter {
  void operator()(CURLU* url) const noexcept { curl_url_cleanup(url); }
};
struct CurlStringDeleter {
  void operator()(char* text) const noexcept { curl_free(text); }
};

// CURL: one transfer's settings and state; reusable for the next transfer.
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;
// CURLM: a multi handle, with its connection cache.
using MultiHandle = std::unique_ptr<CURLM, MultiDeleter>;
// curl_slist: request headers; must outlive the transfer that uses them.
using SlistHandle = std::unique_ptr<curl_slist, SlistDeleter>;
// CURLU: a parsed URL.
using UrlHandle = std::unique_ptr<CURLU, UrlDeleter>;
// A string libcurl allocated (curl_url_get).
using CurlString = std::unique_ptr<char, CurlStringDeleter>;

// curl_global_init, once per process, before the first handle (thread-safe; libcurl is never
// cleaned up: other code of the process may still use it at exit). Throws std::runtime_error
// when libcurl cannot be initialised.
void ensure_curl_initialised();

}  // namespace emissions::detail::webhooks
