// Gives the CommonJS bundle an `import.meta.url` equivalent.
export const __roomdag_import_meta_url = require("url").pathToFileURL(__filename).href;
