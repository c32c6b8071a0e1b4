/*
 * The subset of ingest-common's `set` processor that hcm-soc uses: `field`,
 * `value` (a literal, or the template {{_ingest.timestamp}} / {{{_ingest.timestamp}}}),
 * `override` (default true) and `ignore_empty_value`. Any other template is
 * refused at pipeline creation, so a pipeline never behaves differently here
 * than on a real cluster without saying so.
 */
package vn.hcmsoc.devnode.module;

import org.elasticsearch.ingest.AbstractProcessor;
import org.elasticsearch.ingest.ConfigurationUtils;
import org.elasticsearch.ingest.IngestDocument;
import org.elasticsearch.ingest.Processor;

import java.util.Map;

final class SetProcessor extends AbstractProcessor {
    static final String TYPE = "set";

    private final String field;
    private final Object value;
    private final boolean ingestTimestamp;
    private final boolean override;
    private final boolean ignoreEmptyValue;

    SetProcessor(String tag, String description, String field, Object value, boolean ingestTimestamp, boolean override, boolean ignoreEmptyValue) {
        super(tag, description);
        this.field = field;
        this.value = value;
        this.ingestTimestamp = ingestTimestamp;
        this.override = override;
        this.ignoreEmptyValue = ignoreEmptyValue;
    }

    @Override
    public IngestDocument execute(IngestDocument document) {
        if (!override && document.hasField(field) && document.getFieldValue(field, Object.class) != null) {
            return document;
        }
        Object v = ingestTimestamp ? String.valueOf(document.getIngestMetadata().get("timestamp")) : value;
        if (ignoreEmptyValue && (v == null || (v instanceof String s && s.isEmpty()))) {
            return document;
        }
        document.setFieldValue(field, v);
        return document;
    }

    @Override
    public String getType() {
        return TYPE;
    }

    static final class Factory implements Processor.Factory {
        @Override
        public Processor create(Map<String, Processor.Factory> registry, String tag, String description, Map<String, Object> config) {
            String field = ConfigurationUtils.readStringProperty(TYPE, tag, config, "field");
            Object value = ConfigurationUtils.readObject(TYPE, tag, config, "value");
            boolean override = ConfigurationUtils.readBooleanProperty(TYPE, tag, config, "override", true);
            boolean ignoreEmpty = ConfigurationUtils.readBooleanProperty(TYPE, tag, config, "ignore_empty_value", false);
            boolean ts = false;
            if (value instanceof String s && s.contains("{{")) {
                String t = s.replace(" ", "");
                if (t.equals("{{_ingest.timestamp}}") || t.equals("{{{_ingest.timestamp}}}")) {
                    ts = true;
                } else {
                    throw ConfigurationUtils.newConfigurationException(TYPE, tag, "value",
                        "the hcm-soc development node supports only the {{{_ingest.timestamp}}} template, got [" + s + "]");
                }
            }
            return new SetProcessor(tag, description, field, value, ts, override, ignoreEmpty);
        }
    }
}
