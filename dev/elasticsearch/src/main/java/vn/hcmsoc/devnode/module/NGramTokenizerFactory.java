/*
 * The subset of analysis-common's `ngram` tokenizer that hcm-soc uses (the
 * `.grams` trigram sub-fields): `min_gram` (default 1), `max_gram` (default 2)
 * and `token_chars: []` (every character belongs to a token, the default).
 * The n-grams are Lucene's own NGramTokenizer, as in the genuine module.
 * Character classes in `token_chars` and `custom_token_chars` are refused at
 * index creation, so an analyzer never behaves differently here than on a real
 * cluster without saying so.
 */
package vn.hcmsoc.devnode.module;

import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.ngram.NGramTokenizer;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;

import java.util.List;

final class NGramTokenizerFactory extends AbstractTokenizerFactory {
    static final String TYPE = "ngram";

    private final int minGram;
    private final int maxGram;

    NGramTokenizerFactory(IndexSettings indexSettings, Environment environment, String name, Settings settings) {
        super(indexSettings, settings, name);
        this.minGram = settings.getAsInt("min_gram", NGramTokenizer.DEFAULT_MIN_NGRAM_SIZE);
        this.maxGram = settings.getAsInt("max_gram", NGramTokenizer.DEFAULT_MAX_NGRAM_SIZE);
        int maxAllowedDiff = indexSettings.getMaxNgramDiff();
        if (maxGram - minGram > maxAllowedDiff) {
            throw new IllegalArgumentException(
                "The difference between max_gram and min_gram in NGram Tokenizer must be less than or equal to: ["
                    + maxAllowedDiff + "] but was [" + (maxGram - minGram) + "]. This limit can be set by changing the ["
                    + IndexSettings.MAX_NGRAM_DIFF_SETTING.getKey() + "] index level setting."
            );
        }
        List<String> tokenChars = settings.getAsList("token_chars", List.of());
        if (!tokenChars.isEmpty() || settings.get("custom_token_chars") != null) {
            throw new IllegalArgumentException(
                "tokenizer [" + name + "]: the hcm-dev stand-in of the ngram tokenizer supports only token_chars: [] "
                    + "(every character); install analysis-common for character classes"
            );
        }
    }

    @Override
    public Tokenizer create() {
        return new NGramTokenizer(minGram, maxGram);
    }
}
