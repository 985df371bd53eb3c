// The one import map of the Colonies pages (load it with a classic <script> before any module):
// bare specifiers used by the SDK resolve to the copies this server serves (see clients/js/vendor.mjs).
(() => {
  const map = {
    imports: {
      '@noble/secp256k1': '/static/vendor/noble-secp256k1/index.js',
      '@noble/hashes/sha3': '/static/vendor/noble-hashes/sha3.js',
      '@noble/hashes/sha2': '/static/vendor/noble-hashes/sha2.js',
      '@noble/hashes/hmac': '/static/vendor/noble-hashes/hmac.js',
      '@noble/hashes/crypto': '/static/vendor/noble-hashes/crypto.js',
      colonies: '/static/sdk/colonies.js',
    },
  };
  const el = document.createElement('script');
  el.type = 'importmap';
  el.textContent = JSON.stringify(map);
  document.currentScript.after(el);
})();
