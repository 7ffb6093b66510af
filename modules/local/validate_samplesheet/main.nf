/*
 * The samplesheet against assets/schema_input.json (jsonschema, offline): every row's columns, types
 * and enums, unique dataset ids, existing files. Writes the rows as meta maps with defaults filled in.
 */
process VALIDATE_SAMPLESHEET {
    tag "${samplesheet.name}"
    label 'process_single'

    input:
    path(samplesheet, stageAs: 'input/*')
    path(schema)
    val(source)

    output:
    path "samplesheet.valid.json", emit: json
    path "versions.yml"          , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    validate_samplesheet.py \\
        --samplesheet ${samplesheet} \\
        --schema ${schema} \\
        --source '${source.toString().replace("'", "'\\''")}' \\
        --out samplesheet.valid.json \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    """
    validate_samplesheet.py --samplesheet ${samplesheet} --schema ${schema} --source '${source.toString().replace("'", "'\\''")}' --out samplesheet.valid.json
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
