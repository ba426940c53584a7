// The web console's static files (cogs/cloud/ui/web), served by cogsd on its API port under /ui/.
//
// The console is plain HTML, CSS and JavaScript modules that speak only the public API (/v1) with
// the user's own token: nothing here reads the model or knows a resource. The files are embedded
// into the binary at build time (embed.cmake makes a .cc of them), so cogsd never looks a file up at
// run time and a new binary always serves the files it was built with.
//
// The contract of Serve:
//
//   GET|HEAD /ui                -> 308 Location: /ui/ (the entry's relative module paths need the slash)
//   GET|HEAD /ui/               -> index.html
//   GET|HEAD /ui/<name>         -> the embedded file of that exact name (e.g. js/api.js), else 404
//   any other method            -> 405 with Allow: GET, HEAD
//
// - A name is matched byte for byte against the embedded table: nothing is decoded or normalised, so
//   `/ui/../v1/servers`, `/ui/%2e%2e/...` or `/ui/js//api.js` can only ever be 404 (never a file
//   outside the table, never an API route).
// - Content-Type by extension (.html, .css, .js as text/javascript — module scripts need a
//   JavaScript type —, .svg, .png, .ico, .json, .txt), with charset=utf-8 for text.
// - ETag: a strong tag of the content (http::EntityTag, as /v1's reads). If-None-Match holding it
//   (a list, weak or strong, or `*`: http::NoneMatchHits) -> 304 without a body.
// - Cache-Control: no-cache on every file: the browser keeps it but revalidates each use, which
//   costs a 304; so a new binary's files are taken at the next load, without content-hashed names
//   (which would need a build step that rewrites the modules' imports).
// - On every answer, errors included: Content-Security-Policy (kContentSecurityPolicy: no inline
//   script or style, nothing from another origin, no framing), X-Content-Type-Options: nosniff,
//   Referrer-Policy: no-referrer.
// - HEAD: the same status, type and validators as GET, without the body (cogs/http then says
//   Content-Length: 0, not the GET's length).
//
// Errors are in the API's shape ({"code","message"}), JSON.
//
// Who may: anyone. The files hold no data; HttpApi (api/http_api.h, SetStatic) admits these requests
// in the tenant lane under the client's address, with no token, like a face's anonymous routes.
//
// Threading: pure functions over constant data; any thread.
#pragma once

#include <string_view>

#include "cogs/http/server.h"

namespace cogs::cloud::ui {

inline constexpr std::string_view kContentSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// True for the paths the console answers: /ui and everything under /ui/.
bool Owns(std::string_view path);

// The answer to a request whose path Owns() (see the contract above).
http::Response Serve(const http::Request& request);

}  // namespace cogs::cloud::ui
