// /api/docs: Swagger UI (vendored in static/swagger-ui, it reads OpenAPI 3.1) on the panel's own OpenAPI
// document, with no inline script. "Authorize" takes the token (`contentq web token`) and sends it as
// `Authorization: Bearer …`; until then "Try it out" goes with the browser's session cookie and carries the
// page's CSRF token, as the panel's own pages do.
window.addEventListener("DOMContentLoaded", function () {
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null, // no badge fetched from swagger.io: the docs work offline
    requestInterceptor: function (request) {
      var bearer = request.headers.Authorization || request.headers.authorization;
      if (csrf && !bearer) request.headers["X-CSRF-Token"] = csrf;
      return request;
    },
  });
});
