/**
 * `id` stays `id` (PostGraphile renames it `rowId` to make room for Relay's global ids, which
 * the preset disables: ids are plain bigints here).
 */
export const PlainIdsPlugin: GraphileConfig.Plugin = {
  name: 'HardcronPlainIdsPlugin',
  version: '1.0.0',
  inflection: {
    replace: {
      _attributeName(previous, _options, details) {
        return previous!.call(this, { ...details, skipRowId: true });
      },
    },
  },
};
