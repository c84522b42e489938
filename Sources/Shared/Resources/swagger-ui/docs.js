// Starts Swagger UI on the service's own OpenAPI document. A file of its own, not inline: /docs's Content Security
// Policy allows scripts from the service only.
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  deepLinking: true,
  // "Try it out" calls the server that served this page, whatever the document's `servers` say.
  requestInterceptor: (request) => {
    const url = new URL(request.url, document.baseURI);
    if (url.origin !== window.location.origin) {
      request.url = window.location.origin + url.pathname + url.search;
    }
    return request;
  },
});
