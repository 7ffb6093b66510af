/*
 * Gene (perturbation) embeddings of a dataset's perturbation targets from a foundation model
 * (esm2, genept, scgpt, geneformer): one table per dataset x model, used by EMBED_GENES like any
 * external table. `extra` holds the model's side file, a protein FASTA (esm2) or gene descriptions
 * (genept), or nothing.
 */
process EXTRACT_GENE_EMBEDDINGS {
    tag "${meta.id} ${model}"
    label 'process_gpu'

    input:
    tuple val(meta), path(h5ad), path(counts, stageAs: 'input/*'), val(model), path(checkpoint, stageAs: 'checkpoint/*'), path(extra, stageAs: 'extra/*')
    path gene_id_map

    output:
    tuple val(meta), val(model), path("*.gene_table.parquet"), emit: table
    path "versions.yml"                                     , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    def dataset_args = task.ext.args2 ?: ''  // the samplesheet row's columns (conf/modules.config)
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    def side   = extra ? "--side-input ${extra}" : ''
    def id_map = gene_id_map ? "--gene-id-map ${gene_id_map}" : ''
    """
    extract_gene_embeddings.py \\
        --h5ad ${h5ad} \\
        --counts-h5ad ${counts} \\
        --model ${model} \\
        --checkpoint ${checkpoint} \\
        ${side} \\
        ${id_map} \\
        ${dataset_args} \\
        --out ${prefix}.gene_table.parquet \\
        --versions-yml versions.yml \\
        --task-process "${task.process}" \\
        ${args}
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}.${model}"
    """
    touch ${prefix}.gene_table.parquet
    printf '"%s":\\n    pertprobe: stub\\n' "${task.process}" > versions.yml
    """
}
